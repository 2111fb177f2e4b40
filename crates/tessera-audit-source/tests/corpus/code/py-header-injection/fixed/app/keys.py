from jose import jwt

KEYS = {"2026-01": "-----BEGIN PUBLIC KEY-----"}


def key_for(token):
    header = jwt.get_unverified_header(token)
    return KEYS[header["kid"]]
