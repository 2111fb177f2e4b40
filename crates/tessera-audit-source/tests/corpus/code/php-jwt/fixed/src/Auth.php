<?php

use Firebase\JWT\JWT;
use Firebase\JWT\Key;

// Not: JWT::decode($jwt, 'secret', ['HS256', 'none'])
function verify(string $jwt, string $publicKey): object
{
    $claims = JWT::decode($jwt, new Key($publicKey, 'RS256'));
    if ($claims->aud !== 'orders' || $claims->iss !== 'https://auth.example.com') {
        throw new UnexpectedValueException('wrong audience or issuer');
    }
    return $claims;
}

function remember(string $token): void
{
    setcookie('access_token', $token, ['httponly' => true, 'secure' => true, 'samesite' => 'Strict']);
}
