"""Who is at the desk: an agent, or a signed-in admin; the sign-in forms and the admin gate.

Admins sign in with the admin password (generated on first start unless one is configured), or,
when the deploy sets up OpenID Connect in the secrets' [auth] section and names its admins in
CHATBOT_ADMIN_EMAILS, with their account through `st.login`. A password sign-in survives a
page refresh through a signed, expiring token in a cookie (read back with `st.context.cookies`);
an OpenID Connect sign-in through Streamlit's own identity cookie.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis
import streamlit as st

from chatbot.access.roles import ADMIN, ADMIN_ACTIONS, AGENT, allowed, describe
from chatbot.access.throttle import TURN_KEPT
from common.timefmt import in_words
from ui.services import get_auth, get_session_tokens, get_settings

log = logging.getLogger(__name__)

COOKIE = "chatbot_admin"
ADMIN_ONLY = "Admins only: sign in"
# Session-state keys. Session state lives on the server: nothing a browser sends can set them.
SINCE, USER, VIA, SID = "admin_since", "admin_user", "admin_via", "admin_sid"
BROWSER = "browser_session"
COOKIE_READ = "admin_cookie_read"
COOKIE_PENDING = "admin_cookie_pending"
ACCOUNT_BOX = "account_box"
OIDC_SEEN = "oidc_seen"


@dataclass(frozen=True)
class Admin:
    user: str
    via: str  # "password" or "oidc"


def browser_session() -> str:
    """This browser session's id, made on the server; wrong passwords are counted against it."""
    return st.session_state.setdefault(BROWSER, secrets.token_urlsafe(12))


def session_seconds() -> float:
    return get_settings().admin_session_hours * 3600


# -- OpenID Connect -----------------------------------------------------------------------------
def _auth_section() -> Mapping:
    try:
        section = st.secrets.get("auth")
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return {}
    return section if isinstance(section, Mapping) else {}


def admin_emails() -> set[str]:
    raw = get_settings().admin_emails
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return {str(item).strip().lower() for item in items if str(item).strip()}


def oidc_admins() -> bool:
    """True when admins sign in with OpenID Connect: an [auth] section and admin e-mails are configured."""
    return bool(_auth_section()) and bool(admin_emails())


def _provider() -> str | None:
    """The [auth] provider to sign in with: the unnamed one, else the first named one."""
    section = _auth_section()
    if "client_id" in section:
        return None
    return next((name for name, value in section.items() if isinstance(value, Mapping)), None)


def _oidc_email() -> str:
    """The signed-in account's e-mail when the provider vouches for it; empty otherwise."""
    try:
        user = st.user.to_dict()
    except Exception:  # no session context: nobody
        return ""
    if not user.get("is_logged_in") or user.get("email_verified") is False:
        return ""
    return str(user.get("email") or "").strip().lower()


def _oidc_ended(email: str) -> bool:
    """Whether this account sign-in predates the account's last sign-out (in any tab or browser).

    When it was made: the ID token's `iat`, which Streamlit keeps in its identity cookie; else when
    this browser session first saw it.
    """
    try:
        issued = st.user.to_dict().get("iat")
    except Exception:  # no session context
        issued = None
    made = float(issued) if isinstance(issued, (int, float)) else st.session_state.setdefault(OIDC_SEEN, time.time())
    try:
        ended = get_session_tokens().account_ended(email)
    except redis.RedisError as exc:  # cannot tell: no admin rights now
        log.warning("Could not check an account sign-in: %s", exc)
        return True
    return bool(ended) and made <= ended


# -- the browser cookie ---------------------------------------------------------------------------
def _read_cookie() -> str:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # no browser connection (a test run, the command line)
        return ""
    return value if isinstance(value, str) else ""


def _cookie_script(value: str, max_age: int) -> str:
    cookie = json.dumps(f"{COOKIE}={value}; Max-Age={max_age}; Path=/; SameSite=Strict")
    return f"<script>document.cookie = {cookie} + (location.protocol === 'https:' ? '; Secure' : '');</script>"


def flush_cookie() -> None:
    """Write (or clear) the sign-in cookie decided on the previous run, in the browser."""
    pending = st.session_state.pop(COOKIE_PENDING, None)
    if pending is not None:
        value, max_age = pending
        st.html(_cookie_script(value, max_age), unsafe_allow_javascript=True, width="content")


def _restore_from_cookie() -> None:
    """Once per session: a valid token in the cookie the browser connected with signs the admin in again."""
    ss = st.session_state
    ss[COOKIE_READ] = True
    token = _read_cookie()
    if not token:
        return
    try:
        session = get_session_tokens().verify(token)
    except redis.RedisError as exc:
        log.warning("Could not check a sign-in cookie: %s", exc)
        return
    if session is None:
        ss[COOKIE_PENDING] = ("", 0)  # expired, revoked or forged: drop it
        return
    ss.update({SINCE: session["issued"], USER: session["user"], VIA: session["via"], SID: session["sid"]})


def _start_session(user: str, via: str) -> None:
    ss = st.session_state
    try:
        token, sid = get_session_tokens().issue(user, via)
        ss[COOKIE_PENDING] = (token, int(session_seconds()))
    except redis.RedisError as exc:  # signed in for this tab only
        log.warning("Could not record the sign-in for later visits: %s", exc)
        sid = ""
    ss.update({SINCE: time.time(), USER: user, VIA: via, SID: sid, COOKIE_READ: True})


def _forget_session() -> None:
    ss = st.session_state
    sid = ss.get(SID, "")
    for key in (SINCE, USER, VIA, SID):
        ss.pop(key, None)
    if sid:
        try:
            get_session_tokens().revoke(sid)
        except redis.RedisError as exc:
            log.warning("Could not revoke a sign-in: %s", exc)
    ss[COOKIE_PENDING] = ("", 0)


# -- who is signed in -------------------------------------------------------------------------------
def current_admin() -> Admin | None:
    """The signed-in admin, or None for an agent."""
    ss = st.session_state
    if oidc_admins():
        email = _oidc_email()
        return Admin(email, "oidc") if email and email in admin_emails() and not _oidc_ended(email) else None
    if SINCE not in ss and not ss.get(COOKIE_READ):
        _restore_from_cookie()
    since = ss.get(SINCE)
    if since is None:
        return None
    if time.time() - since >= session_seconds():
        _forget_session()  # expired
        return None
    if not _still_signed_in():
        return None
    return Admin(ss.get(USER) or "admin", ss.get(VIA) or "password")


def _still_signed_in() -> bool:
    """Whether this tab's sign-in was not ended elsewhere: sign-out in one tab ends every tab and
    browser that shares its sign-in, at their next run or admin action (asked of Redis each time)."""
    ss = st.session_state
    sid = ss.get(SID, "")
    if not sid:
        return True  # signed in for this tab only (Redis was down then): nothing else can end it
    try:
        active = get_session_tokens().is_active(sid)
    except redis.RedisError as exc:  # cannot tell: no admin rights now, the sign-in kept for later
        log.warning("Could not check a sign-in: %s", exc)
        return False
    if not active:  # signed out in another tab or browser: dropped here too
        # The cookie is left alone: the browser shares it with the other tabs, one of which may hold
        # a newer sign-in by now; a revoked token in it is refused (and dropped) on its next visit.
        for key in (SINCE, USER, VIA, SID):
            ss.pop(key, None)
    return active


def is_admin() -> bool:
    return current_admin() is not None


def role() -> str:
    return ADMIN if is_admin() else AGENT


def client_id() -> str:
    """Whom the spending limits count: the signed-in user, else this browser session."""
    admin = current_admin()
    if admin:
        return f"user:{admin.user}"
    email = _oidc_email() if _auth_section() else ""
    return f"user:{email}" if email else f"session:{browser_session()}"


def authorized(action: str) -> bool:
    """The check on an admin-only action's own code path: says so and returns False for an agent."""
    if allowed(role(), action):
        return True
    st.error(f"{ADMIN_ONLY} to {describe(action)}.", icon=":material/lock:")
    return False


def admin_hint(what: str) -> None:
    """A short note next to controls an agent sees disabled: an action's name, or words of its own."""
    st.caption(f":material/lock: {ADMIN_ONLY} to {describe(what) if what in ADMIN_ACTIONS else what}.")


# -- sign in and out -------------------------------------------------------------------------------
def sign_in(password: str) -> str:
    """Check the admin password for this browser session; an error message, or "" when signed in."""
    if oidc_admins():
        return "Admins sign in with their account."
    try:
        attempt = get_auth().attempt(password, browser_session())
    except redis.RedisError:
        return "Sign-in is unavailable: the conversation store cannot be reached. Try again shortly."
    if attempt.ok:
        _start_session("admin", "password")
        return ""
    if attempt.scope == "everyone":
        return (f"Too many wrong passwords lately: password sign-in is paused for everyone. Your turn to "
                f"try comes in {in_words(attempt.wait)}, and is kept for you for {in_words(TURN_KEPT)}. "
                "Admins already signed in are not affected.")
    if attempt.wait:
        return f"Wrong password. Try again in {in_words(attempt.wait)}."
    return "Wrong password."


def sign_out() -> None:
    if st.session_state.get(VIA) != "password" and oidc_admins():
        email = _oidc_email()
        try:
            if email:
                get_session_tokens().end_account(email)  # the account's other tabs and browsers too
        except redis.RedisError as exc:
            log.warning("Could not record a sign-out for the account's other tabs: %s", exc)
        st.logout()
        return
    _forget_session()


def sign_in_form(prefix: str) -> None:
    """The password form (keys `{prefix}_password_input`, `{prefix}_unlock`), or the account sign-in button."""
    if oidc_admins():
        email = _oidc_email()
        if email in admin_emails():  # signed out in another tab or browser
            st.info(f"{email} signed out. Sign in again to act as an admin.")
            if st.button("Sign in again", key=f"{prefix}_oidc_sign_in", icon=":material/login:", type="primary"):
                st.login(_provider())
        elif email:
            st.warning(f"{email} is not an admin account.")
            if st.button("Sign out", key=f"{prefix}_oidc_sign_out", icon=":material/logout:"):
                st.logout()
        elif st.button("Sign in with your account", key=f"{prefix}_oidc_sign_in", icon=":material/login:",
                       type="primary"):
            st.login(_provider())
        return
    with st.form(f"{prefix}_login", clear_on_submit=True):
        password = st.text_input("Admin password", type="password", key=f"{prefix}_password_input")
        submitted = st.form_submit_button("Unlock", key=f"{prefix}_unlock")
    if submitted:
        error = sign_in(password)
        if not error:
            st.rerun()
        st.error(error)


def render_account() -> None:
    """The sidebar's account box, on every page of the app: the role, and signing in or out."""
    st.session_state[ACCOUNT_BOX] = True
    admin = current_admin()
    with st.sidebar:
        flush_cookie()
        if admin:
            st.caption(f":material/shield_person: Admin · {admin.user}")
            if st.button("Sign out", key="account_sign_out", icon=":material/logout:"):
                sign_out()
                st.rerun()
        else:
            st.caption(":material/support_agent: Agent · admins sign in to change the knowledge base, "
                       "prompts and training")
            with st.popover("Admin sign-in", icon=":material/login:"):
                sign_in_form("account")


def require_admin() -> None:
    """Show the sign-in and stop the page unless an admin is signed in."""
    if is_admin():
        if not st.session_state.get(ACCOUNT_BOX):  # the page runs on its own: offer the sign-out here
            with st.sidebar:
                flush_cookie()
                if st.button("Sign out of admin", icon=":material/logout:", key="admin_sign_out"):
                    sign_out()
                    st.rerun()
        return
    if not st.session_state.get(ACCOUNT_BOX):
        flush_cookie()
    st.subheader("Admin sign-in")
    st.caption("This page is for administrators. The chat, history, knowledge base and stats stay open to agents.")
    sign_in_form("admin")
    st.stop()
