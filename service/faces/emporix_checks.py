"""The checks of the Emporix face's writes: what must be there (an
attribute to remove), and who may change a context that belongs to a
customer. On the customer side (``/me/context``) the customer's own token
(a JWT, see service/customer_tokens.py) in ``Authorization: Bearer`` names the
session; on the management side a change that replaces a customer's context
needs that customer's token in ``saas-token``."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request

from .. import customer_tokens
from ..customer_tokens import CustomerToken, InvalidCustomerToken
from ..store.core import Changes, Session
from ..web import ApiError, Context
from .emporix_wire import CONTEXT, CUSTOMER_ID, attribute_not_found

Check = Callable[[Session | None], None]


def needs_attribute(session_id: str, name: str) -> Check:
    """A check that the stored context has the attribute ``name`` (404 otherwise)."""

    def check(stored: Session | None) -> None:
        raw = None if stored is None else stored.properties.get(CONTEXT)
        context = None if raw is None else orjson.loads(raw)
        if not isinstance(context, dict) or name not in context:
            raise attribute_not_found(session_id, name)

    return check


def owner_of(session: Session | None) -> str | None:
    """The customerId of a stored context (None: none)."""
    raw = None if session is None else session.properties.get(CUSTOMER_ID)
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, str) and value else None


def owner_may(token: CustomerToken, owner: str | None) -> None:
    """On /me: a context that belongs to a customer is that customer's only."""
    if owner and token.customer_id != owner:
        raise ApiError(403, "this session context belongs to another customer")


class OwnContext:
    """The check of a /me write (the owner rule, then ``more``), which keeps
    the owner it saw, so that the write can tie the context: to the token's
    customer, when the write creates the context (its customerId is set then)
    or the context is that customer's already."""

    def __init__(self, token: CustomerToken, more: Check | None = None) -> None:
        self.token = token
        self.more = more
        self.owner: str | None = None

    def __call__(self, stored: Session | None) -> None:
        self.owner = owner_of(stored)
        owner_may(self.token, self.owner)
        if self.more is not None:
            self.more(stored)

    def tie(self, changes: Changes, created: bool) -> Changes:
        customer = self.token.customer_id
        if customer and (created or self.owner == customer):
            changes.tie(customer)
        return changes


class Customers:
    """The customer tokens of one app (its auth file's [customer_tokens])."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Read and checked now: a bad [customer_tokens] section fails the app build.
        self.tokens = customer_tokens.from_auth(ctx.auth)

    def verify(self, token: str) -> CustomerToken:
        if self.tokens is None:
            raise InvalidCustomerToken(
                "customer tokens are not configured on this server (no [customer_tokens] in the auth file)"
            )
        return self.tokens.verify(token)

    def own(self, request: Request, tenant: str) -> tuple[CustomerToken, str]:
        """The customer token of a /me call, and its session id (401 otherwise).
        API keys are not accepted here."""
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            raise ApiError(401, "a customer access token is required: Authorization: Bearer <token>")
        try:
            token = self.verify(authorization[7:].strip())
        except InvalidCustomerToken as exc:
            raise ApiError(401, exc.message) from None
        if token.tenant != tenant:
            raise ApiError(401, "the customer token is for another tenant")
        session_id = token.session_id
        if session_id is None:
            raise ApiError(401, "the customer token names no session (claim sessionId, session_id or sid)")
        try:
            self.ctx.identifier(session_id, "session id")
        except ApiError:
            raise ApiError(401, "the customer token's session id is not a valid session id") from None
        return token, session_id

    def saas_token(self, request: Request, tenant: str, owners: set[str]) -> None:
        """A management change to a customer's context needs that customer's
        token in ``saas-token``: 403 otherwise."""
        if not owners:
            return
        raw = request.headers.get("saas-token", "").strip()
        if raw[:7].lower() == "bearer ":
            raw = raw[7:].strip()
        if not raw:
            raise ApiError(
                403, "this session context belongs to a customer: send that customer's token in the saas-token header"
            )
        try:
            token = self.verify(raw)
        except InvalidCustomerToken as exc:
            raise ApiError(403, f"saas-token refused: {exc.message}") from None
        if token.tenant != tenant:
            raise ApiError(403, "saas-token refused: it is for another tenant")
        if any(token.customer_id != owner for owner in owners):
            raise ApiError(
                403, "saas-token refused: it is not the token of the customer this session context belongs to"
            )
