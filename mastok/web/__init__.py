"""HTTP: admin pages, the JSON API, authentication, templates."""
