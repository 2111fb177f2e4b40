package com.example.auth;

import io.jsonwebtoken.Claims;
import io.jsonwebtoken.Jwts;
import io.jsonwebtoken.SignatureAlgorithm;
import io.jsonwebtoken.security.Keys;

public class TokenService {
    private static final String SECRET = "secret";

    public String issue(String subject) {
        return Jwts.builder().setSubject(subject).signWith(SignatureAlgorithm.HS256, SECRET).compact();
    }

    public Claims read(String token) {
        return Jwts.parser().setSigningKey(SECRET).setAllowedClockSkewSeconds(86400).parseClaimsJws(token).getBody();
    }

    public Object readAnything(String token) {
        return Jwts.parser().setSigningKey(Keys.hmacShaKeyFor("a-hard-coded-java-secret-long-enough-1234".getBytes())).parse(token).getBody();
    }
}
