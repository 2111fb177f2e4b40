import requests
from jose import jwk, jwt


def key_for(token, cursor):
    header = jwt.get_unverified_header(token)
    kid = header["kid"]
    with open(f"/etc/keys/{kid}.pem") as pem:
        key = pem.read()
    cursor.execute(f"SELECT pem FROM keys WHERE kid = '{kid}'")
    remote = requests.get(header["jku"])
    embedded = jwk.construct(header["jwk"])
    return key, remote, embedded
