package com.example.auth

import com.auth0.jwt.JWT
import com.auth0.jwt.algorithms.Algorithm
import io.jsonwebtoken.Jwts
import java.io.File

const val SECRET = "secret"

class Tokens {
    fun read(token: String): Any =
        Jwts.parser().setSigningKey(SECRET.toByteArray()).setAllowedClockSkewSeconds(86400).parseClaimsJws(token).body

    fun subject(token: String): String = JWT.decode(token).subject

    fun keyFile(token: String): String {
        val kid = JWT.decode(token).keyId
        return File("/etc/keys/$kid.pem").readText()
    }

    fun verify(token: String) = JWT.require(Algorithm.none()).build().verify(token)
}
