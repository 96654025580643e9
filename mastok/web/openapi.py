"""The OpenAPI document of the JSON API, with schemas taken from the campaign rules."""

from __future__ import annotations

from functools import cache
from typing import Any

from mastok import __version__
from mastok.campaigns.rules import CampaignCreate, CampaignUpdate

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = _json(_ref("ValidationErrors"), "Invalid fields, nothing saved")
NOT_FOUND = _json(_ref("Error"), "No campaign with that namespace")
NAMESPACE = {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}


def _schemas() -> dict[str, Any]:
    create = CampaignCreate.model_json_schema(ref_template=REF + "{model}")
    update = CampaignUpdate.model_json_schema(ref_template=REF + "{model}")
    patch = {**update, "title": "CampaignPatch", "required": []}
    campaign = {
        "title": "Campaign",
        "type": "object",
        "properties": {
            **create["properties"],
            "state": update["properties"]["state"],
            "started_sessions": {"type": "integer", "minimum": 0},
            "uid": {"type": "string", "description": "Random id in its oTree session labels"},
            "share_url": {"type": "string", "format": "uri"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "CampaignCreate": create,
        "CampaignPatch": patch,
        "Campaign": campaign,
        "ValidationErrors": {
            "type": "object",
            "properties": {
                "errors": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "required": ["errors"],
        },
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        },
    }


def _paths() -> dict[str, Any]:
    any_object = {"type": "object"}
    return {
        "/api/campaigns": {
            "get": {
                "summary": "List campaigns, newest first",
                "responses": {"200": _json({"type": "array", "items": _ref("Campaign")}, "OK")},
            },
            "post": {
                "summary": "Create a campaign (Paused)",
                "requestBody": {"required": True, **_json(_ref("CampaignCreate"), "Fields")},
                "responses": {"201": _json(_ref("Campaign"), "Created"), "422": ERRORS},
            },
        },
        "/api/campaigns/{namespace}": {
            "parameters": [NAMESPACE],
            "get": {
                "summary": "One campaign",
                "responses": {"200": _json(_ref("Campaign"), "OK"), "404": NOT_FOUND},
            },
            "patch": {
                "summary": "Change some fields and/or the state",
                "requestBody": {"required": True, **_json(_ref("CampaignPatch"), "Changes")},
                "responses": {
                    "200": _json(_ref("Campaign"), "Saved"),
                    "404": NOT_FOUND,
                    "422": ERRORS,
                },
            },
        },
        "/api/campaigns/{namespace}/live": {
            "parameters": [NAMESPACE],
            "get": {
                "summary": "The supervise page's data: campaign, live room, sessions started",
                "responses": {**_ok(any_object), "404": NOT_FOUND},
            },
        },
        "/api/dashboard": {
            "get": {"summary": "Campaign counts and oTree's status", "responses": _ok(any_object)}
        },
        "/api/sessions": {
            "get": {"summary": "oTree's 25 latest sessions", "responses": _ok(any_object)}
        },
        "/api/otree/configs": {
            "get": {
                "summary": "oTree's session configs",
                "responses": {
                    **_ok({"type": "array", "items": any_object}),
                    "502": _json(_ref("Error"), "oTree unreachable or refusing"),
                },
            }
        },
        "/api/openapi.json": {"get": {"summary": "This document", "responses": _ok(any_object)}},
    }


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": _json(schema, "OK")}


@cache
def document(prefix: str = "") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "mastok", "version": __version__},
        "servers": [{"url": prefix or "/"}],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basic": []}],
        "paths": _paths(),
    }
