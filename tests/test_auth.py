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
    bob = signed_in_identity({"email": "bob@acme.com", "name": "Bob"}, ROLE_MAP)
    assert bob.signed_in and bob.name == "bob@acme.com"
    assert [p for p in PAGE_ROLES if bob.may_open(p)] == ["pages/chat.py", "pages/documents.py"]
    root = signed_in_identity({"email": "root@acme.com"}, ROLE_MAP)
    assert all(root.may_open(p) for p in PAGE_ROLES)
    eve = signed_in_identity({"email": "eve@evil.com"}, ROLE_MAP)
    assert not any(eve.may_open(p) for p in PAGE_ROLES)
    assert "needs the 'manager' role" in not_allowed_message(bob, "pages/usage.py")


def test_with_sign_in_off_the_local_user_has_every_role():
    me = local_identity("ada")
    assert not me.signed_in and all(me.may_open(p) for p in PAGE_ROLES)
