"""The token rule both sides apply: printable text without spaces, never empty."""

from __future__ import annotations

import pytest

from micwire.common.errors import ParameterError
from micwire.common.tokens import check_token


def test_no_token_and_a_plain_token_pass() -> None:
    check_token(None, "--token")
    check_token("s3cret-Ünïcode_ok", "--token")


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "--listen-token is empty; give a secret, or leave it out"),
        ("two words", "--listen-token must be printable text without spaces"),
        ("tab\there", "--listen-token must be printable text without spaces"),
        ("new\nline", "--listen-token must be printable text without spaces"),
        ("nbsp\u00a0", "--listen-token must be printable text without spaces"),
    ],
)
def test_a_token_that_cannot_travel_in_a_header_is_refused(token: str, says: str) -> None:
    with pytest.raises(ParameterError, match=f"^{says}$"):
        check_token(token, "--listen-token")
