"""Roles come from the role map by email or domain; pages check them on the server."""

from lib.core.identity import PAGE_ROLES, local_identity, not_allowed_message, roles_for, signed_in_identity

ROLE_MAP = {
    "@acme.com": ("staff",),
    "ada@acme.com": ("author", "manager"),
    "root@acme.com": ("admin",),
    "*": ("bogus-role",),
}


def test_roles_combine_domain_and_exact_email_and_ignore_unknown_roles():
    assert roles_for("Ada@Acme.com", ROLE_MAP) == {"staff", "author", "manager"}
    assert roles_for("bob@acme.com", ROLE_MAP) == {"staff"}
    assert roles_for("eve@evil.com", ROLE_MAP) == frozenset()
    assert roles_for(None, ROLE_MAP) == frozenset()


def test_a_user_opens_only_the_pages_of_their_roles_and_admins_open_all():
    def verified(email: str, **more) -> dict:
        return {"email": email, "email_verified": True, "sub": email.split("@")[0], "iss": "https://idp", **more}

    bob = signed_in_identity(verified("bob@acme.com", name="Bob"), ROLE_MAP)
    assert bob.signed_in and bob.name == "bob@acme.com"
    assert [p for p in PAGE_ROLES if bob.may_open(p)] == ["pages/chat.py", "pages/documents.py"]
    root = signed_in_identity(verified("root@acme.com"), ROLE_MAP)
    assert all(root.may_open(p) for p in PAGE_ROLES)
    eve = signed_in_identity(verified("eve@evil.com"), ROLE_MAP)
    assert not any(eve.may_open(p) for p in PAGE_ROLES)
    assert "needs the 'manager' role" in not_allowed_message(bob, "pages/usage.py")


def test_with_sign_in_off_the_local_user_has_every_role():
    me = local_identity("ada")
    assert not me.signed_in and all(me.may_open(p) for p in PAGE_ROLES)


def test_an_unverified_email_gets_no_roles_even_for_an_admin_address():
    claims = {"email": "root@acme.com", "email_verified": False, "sub": "attacker-1", "iss": "https://idp"}
    eve = signed_in_identity(claims, ROLE_MAP)
    assert eve.roles == frozenset() and eve.email is None and "not verified" in (eve.problem or "")
    unsent = signed_in_identity({"email": "root@acme.com", "sub": "x", "iss": "https://idp"}, ROLE_MAP)
    assert unsent.roles == frozenset()  # no claim at all counts as unverified


def test_a_verified_email_gets_its_roles_and_data_is_keyed_by_subject():
    claims = {"email": "root@acme.com", "email_verified": True, "sub": "u-42", "iss": "https://idp"}
    root = signed_in_identity(claims, ROLE_MAP)
    assert "admin" in root.roles and root.name == "root@acme.com"
    assert root.owner == "oidc:https://idp|u-42"
    other = signed_in_identity({**claims, "sub": "u-43"}, ROLE_MAP)  # same address, another account
    assert other.owner != root.owner


def test_verification_can_be_waived_for_providers_that_never_send_the_claim():
    root = signed_in_identity({"email": "root@acme.com", "sub": "u-42"}, ROLE_MAP, require_verified_email=False)
    assert "admin" in root.roles


def test_a_token_without_a_subject_gets_nothing():
    anon = signed_in_identity({"email": "root@acme.com", "email_verified": True}, ROLE_MAP)
    assert anon.roles == frozenset() and anon.problem


def test_the_reviewer_role_opens_review_only_and_authors_open_pipelines_but_not_review():
    claims = {"email": "rita@acme.com", "email_verified": True, "sub": "rita", "iss": "https://idp"}
    rita = signed_in_identity(claims, {"rita@acme.com": ("reviewer",)})
    assert [p for p in PAGE_ROLES if rita.may_open(p)] == ["pages/review.py"]
    ada = signed_in_identity({**claims, "email": "ada@acme.com", "sub": "ada"}, ROLE_MAP)
    assert ada.may_open("pages/pipelines.py") and not ada.may_open("pages/review.py")
    assert "needs the 'reviewer' role (Review: approve, edit or reject" in not_allowed_message(ada, "pages/review.py")
