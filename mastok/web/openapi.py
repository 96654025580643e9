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
        "Stats": _stats_schema(),
        **_monitoring_schemas(),
    }


def _stats_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    seconds = {"type": ["number", "null"]}
    counts = {"type": "object", "additionalProperties": count}
    funnel = {
        "type": "object",
        "properties": {k: count for k in ("arrived", "consented", "joined", "started", "in_room")},
        "required": ["arrived", "consented", "joined", "started"],
    }
    return {
        "type": "object",
        "properties": {
            "funnel": funnel,
            "outcomes": counts,
            "last_hour": {"type": "object", "properties": {"funnel": funnel, "outcomes": counts}},
            "wait_seconds": {
                "type": "object",
                "properties": {"count": count, "median": seconds, "p95": seconds, "max": seconds},
            },
            "wait_histogram": {"type": "object"},
            "fill_seconds": {
                "type": "object",
                "properties": {
                    "count": count,
                    "median": seconds,
                    "last": {"type": "array", "items": count},
                },
            },
            "arrivals_per_minute": {"type": "array", "items": {"type": "array"}},
            "waiting": {"type": "array", "items": {"type": "object"}},
        },
        "required": [
            "funnel",
            "outcomes",
            "wait_seconds",
            "fill_seconds",
            "arrivals_per_minute",
            "waiting",
        ],
    }


def _query_int(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 1},
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
        "/api/campaigns/{namespace}/stats": {
            "parameters": [
                NAMESPACE,
                {
                    "name": "identities",
                    "in": "query",
                    "required": False,
                    "description": "1: give the platform identity of each person waiting",
                    "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                },
            ],
            "get": {
                "summary": "The supervise page's figures: funnel, outcomes, waits, fills, "
                "arrivals per minute, who is waiting",
                "responses": {**_ok(_ref("Stats")), "404": NOT_FOUND},
            },
        },
        "/api/campaigns/{namespace}/participants": {
            "parameters": [
                NAMESPACE,
                _query_int("limit", "Visits per page (1 to 1000, 100 by default)"),
                _query_int("before", "Only visits older than this visit id (the next page)"),
            ],
            "get": {
                "summary": "The participants' records: one per visit, newest first, paged",
                "responses": {
                    **_ok(any_object),
                    "400": _json(_ref("Error"), "Bad paging"),
                    "404": NOT_FOUND,
                },
            },
        },
        "/api/campaigns/{namespace}/identities": {
            "parameters": [NAMESPACE],
            "delete": {
                "summary": "Erase the visits' identities and captured parameters (not Running)",
                "responses": {
                    **_ok(any_object),
                    "404": NOT_FOUND,
                    "409": _json(
                        _ref("Error"), "The campaign is Running, or people are in its room"
                    ),
                },
            },
        },
        "/api/audit": {
            "parameters": [
                _query_int("limit", "Entries per page (1 to 1000, 100 by default)"),
                _query_int("before", "Only entries older than this entry id (the next page)"),
            ],
            "get": {
                "summary": "The audit log: state-changing admin actions, newest first, paged",
                "responses": {**_ok(any_object), "400": _json(_ref("Error"), "Bad paging")},
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
        **_monitoring_paths(),
    }


# --- LightMill's monitoring (mastok/web/experiments.py) ---------------------------------------

LM_NOT_FOUND = _json(_ref("Error"), "No such experiment, run, block, trial or page")
XP = {"name": "xp", "in": "path", "required": True, "schema": {"type": "string"}}
RUN = {"name": "run", "in": "path", "required": True, "schema": {"type": "string"}}
BLOCK = {"name": "block", "in": "path", "required": True, "schema": {"type": "integer"}}
TRIAL = {"name": "trial", "in": "path", "required": True, "schema": {"type": "integer"}}
PAGE = {
    "name": "page",
    "in": "query",
    "required": False,
    "description": "Page of trials, from 1 (500 trials a page)",
    "schema": {"type": "integer", "minimum": 1, "default": 1},
}
MONITORING = "/api/monitoring/experiments"


def _monitoring_schemas() -> dict[str, Any]:
    text, count = {"type": ["string", "null"]}, {"type": "integer", "minimum": 0}
    moment = {"type": ["string", "null"], "format": "date-time"}
    flags = {
        "unprotected_runs": {"type": "boolean", "description": "Runs can be taken over"},
        "lock_timeout": {"type": "number", "description": "Seconds of silence ending a lock"},
    }
    values = {"type": "object", "additionalProperties": {"type": "string"}}
    trial = {  # a trial's fields, in a page of its run and on its own
        "block": count,
        "measured_block": {"type": ["integer", "null"]},
        "trial": count,
        "practice": {"type": "boolean"},
        "completed_at": moment,
        "factor_values": values,
        "measures": values,
    }
    return {
        "LMExperiment": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": text,
                "author": text,
                "description": text,
                "imported_at": moment,
                "runs": count,
                "runs_started": count,
                "runs_completed": count,
                "runs_locked": {**count, "description": "Held by a client that is alive"},
                "trials": count,
                "trials_done": count,
            },
        },
        "LMRun": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": ["unstarted", "started", "completed"]},
                "trials_done": count,
                "trials_total": count,
                "blocks": count,
                "current": {
                    "type": ["object", "null"],
                    "description": "The trial the run is at (null once completed)",
                    "properties": {"block": count, "trial": count},
                },
                "lock": {
                    "enum": ["locked", "expired", "unlocked"],
                    "description": "expired: its client has been silent for lock_timeout s",
                },
                "locked_since": moment,
                "last_heartbeat": moment,
                "lock_expires_at": moment,
            },
        },
        "LMExperiments": {
            "type": "object",
            "properties": {
                "experiments": {"type": "array", "items": _ref("LMExperiment")},
                **flags,
            },
        },
        "LMExperimentRuns": {
            "type": "object",
            "properties": {
                "experiment": _ref("LMExperiment"),
                "runs": {"type": "array", "items": _ref("LMRun")},
                "downloads": {
                    "type": "object",
                    "description": "Paths of the trials and events CSV files",
                    "properties": {"trials": {"type": "string"}, "events": {"type": "string"}},
                },
                **flags,
            },
        },
        "LMRunTrials": {
            "type": "object",
            "properties": {
                "experiment": {"type": "object"},
                "run": _ref("LMRun"),
                "factors": {"type": "array", "items": {"type": "string"}},
                "measures": {"type": "array", "items": {"type": "string"}},
                "trials": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {**trial, "events": count},
                    },
                },
                "page": count,
                "pages": count,
                "page_size": count,
                **flags,
            },
        },
        "LMTrialEvents": {
            "type": "object",
            "properties": {
                "experiment": {"type": "object"},
                "run": {"type": "string"},
                **trial,
                "event_measures": {"type": "array", "items": {"type": "string"}},
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"number": count, "measures": values},
                    },
                },
                **flags,
            },
        },
    }


def _monitoring_paths() -> dict[str, Any]:
    return {
        MONITORING: {
            "get": {
                "summary": "LightMill experiments and their progress (the /experiments page)",
                "responses": _ok(_ref("LMExperiments")),
            }
        },
        MONITORING + "/{xp}": {
            "parameters": [XP],
            "get": {
                "summary": "An experiment's runs: status, progress, lock (the experiment page)",
                "responses": {**_ok(_ref("LMExperimentRuns")), "404": LM_NOT_FOUND},
            },
        },
        MONITORING + "/{xp}/runs/{run}": {
            "parameters": [XP, RUN, PAGE],
            "get": {
                "summary": "A page of a run's trials with their factor values and measures",
                "responses": {**_ok(_ref("LMRunTrials")), "404": LM_NOT_FOUND},
            },
        },
        MONITORING + "/{xp}/runs/{run}/unlock": {
            "parameters": [XP, RUN],
            "post": {
                "summary": "Release the run's lock, whoever holds it (the Unlock button)",
                "description": "Requires Content-Type: application/json; the body is ignored.",
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "released": {
                                    "type": "boolean",
                                    "description": "false: the run held no lock",
                                },
                                "run": _ref("LMRun"),
                            },
                        }
                    ),
                    "404": LM_NOT_FOUND,
                    "415": _json(_ref("Error"), "Not sent as application/json"),
                },
            },
        },
        MONITORING + "/{xp}/runs/{run}/trials/{block}/{trial}": {
            "parameters": [XP, RUN, BLOCK, TRIAL],
            "get": {
                "summary": "A trial with its events (the trial page)",
                "responses": {**_ok(_ref("LMTrialEvents")), "404": LM_NOT_FOUND},
            },
        },
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
