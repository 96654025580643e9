from html.parser import HTMLParser

from mastok.campaigns.markdown import render, render_consent


class Tags(HTMLParser):
    """The tags and attributes a browser would build from the HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def test_task_items_become_clickable_checkboxes() -> None:
    html = render("- [ ] I am over 18\n- [x] Already ticked")
    assert '<input class="task-list-item-checkbox" type="checkbox"> I am over 18' in html
    assert "checked" in html.split("Already")[0].rsplit("<li", 1)[1]
    assert "disabled" not in html


def test_accept_marker_becomes_the_only_button() -> None:
    html = render_consent("Read this.\n\n[accept]I *agree*[/accept] [accept]Twice[/accept]")
    assert '<button id="accept" type="button">I <em>agree</em></button>' in html
    assert html.count("<button") == 1


def test_raw_html_and_scripts_never_pass() -> None:
    html = render_consent(
        '<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">\n\n'
        "[bad](javascript:alert(1)) [good](https://example.org)\n\n"
        '[accept]<b onclick="x()">OK</b>[/accept]'
    )
    tags = Tags(html).found
    assert {tag for tag, _ in tags} <= {"p", "a", "button", "b"}
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert [attrs["href"] for tag, attrs in tags if tag == "a"] == ["https://example.org"]
    assert '<a href="https://example.org" rel="noopener noreferrer">good</a>' in html
    assert "&lt;script&gt;" in html


def test_only_checkbox_inputs_survive_sanitising() -> None:
    tags = Tags(render('- [ ] ok\n\n<input type="text" name="x">')).found
    assert [attrs.get("type") for tag, attrs in tags if tag == "input"] == ["checkbox"]
