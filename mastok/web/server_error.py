"""A bug's answer: 500 in the shape of the route's other errors, readable by LightMill's pages.

Starlette answers an exception no handler takes in its outermost middleware, outside each
LightMill route's CORS middleware: its 500 carried no CORS header, so an experiment's page saw a
network error and could not read the status (LightMill's Flask app sent the header with it).
The traceback still goes to the log, as Starlette sends it on once this answer is made.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mastok.web import lightmill_api
from mastok.web.errors import message_page, wants_json

MESSAGE = "mastok failed to answer this request (a bug: its log has the details)"


async def server_error(request: Request, error: Exception) -> Response:
    if lightmill_api.is_client_route(request):
        body = {"message": MESSAGE, "type": "InternalServerError"}
        return JSONResponse(body, 500, headers={"Access-Control-Allow-Origin": "*"})
    if wants_json(request):
        return JSONResponse({"error": MESSAGE}, 500)
    return message_page(request, "Server error", MESSAGE[0].upper() + MESSAGE[1:] + ".", 500)
