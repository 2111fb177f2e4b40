package com.example.auth

import com.auth0.jwt.JWT
import com.auth0.jwt.algorithms.Algorithm
import java.security.interfaces.RSAPublicKey

class Tokens(private val keys: Map<String, RSAPublicKey>) {
    // Not: JWT.require(Algorithm.none())
    fun verify(token: String) =
        JWT.require(Algorithm.RSA256(keys[JWT.decode(token).keyId], null))
            .withAudience("orders").withIssuer("https://auth.example.com").acceptLeeway(5).build().verify(token)
}
