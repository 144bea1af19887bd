"""The password policy: what a new console password must be (pure, no database, no hashing).

* 10 to 1024 characters, not all whitespace, no NUL;
* not the user name (nor the name backwards, ignoring case and surrounding spaces);
* strong enough for zxcvbn (Dropbox's estimator, the ``zxcvbn`` package: dictionaries of common
  passwords, names and words, keyboard patterns, dates, repeats and sequences), score 3 or more
  of 4, with the user name as a word it knows. zxcvbn reads at most 72 characters; a longer
  password is judged by its first 72.

:func:`check` raises :class:`PolicyError` with a message a person can act on (zxcvbn's own
warning when it has one). The policy applies where a password is set (``interface users add``
and ``passwd``, ``/api/users``, the Users page), never at sign-in: an old password that would
fail it still signs in, and the next change must meet it.
"""

from __future__ import annotations

MIN_LENGTH = 10
MAX_LENGTH = 1024
MIN_SCORE = 3  # zxcvbn: 0 too guessable ... 4 very unguessable; 3 = safely unguessable online
_ZXCVBN_MAX = 72  # the package refuses longer input


class PolicyError(ValueError):
    """The password does not meet the policy; the message says why."""


def check(password: str, name: str | None = None) -> None:
    if "\x00" in password:
        raise PolicyError("a password cannot contain NUL characters")
    if len(password) < MIN_LENGTH:
        raise PolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PolicyError(f"a password has at most {MAX_LENGTH} characters")
    if not password.strip():
        raise PolicyError("a password cannot be only spaces")
    if name:
        plain, who = password.strip().casefold(), name.strip().casefold()
        if plain in (who, who[::-1]):
            raise PolicyError("a password cannot be the user name")
    from zxcvbn import zxcvbn  # its dictionaries are ~13 MB resident: loaded on the first check

    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=[name] if name else [])
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        why = feedback.get("warning") or "it is too easy to guess"
        hint = " ".join(feedback.get("suggestions") or [])
        raise PolicyError(
            f"password too weak: {why.rstrip('.')}."
            + (f" {hint}" if hint else "")
            + " Use a longer passphrase of uncommon words."
        )
