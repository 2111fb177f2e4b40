<?php

use Firebase\JWT\JWT;
use Firebase\JWT\Key;

const JWT_SECRET = 'secret';

JWT::$leeway = 86400;

function issue(array $claims): string
{
    return JWT::encode($claims, JWT_SECRET, 'HS256');
}

function verify(string $jwt): object
{
    return JWT::decode($jwt, new Key(getenv('JWT_SECRET') ?: 'changeme', 'HS256'));
}

function legacy(string $jwt, string $key): object
{
    return JWT::decode($jwt, $key, ['HS256', 'RS256', 'none']);
}

function keyFile(object $header): string
{
    $kid = $header->kid;
    return file_get_contents("/etc/keys/$kid.pem");
}

function remember(string $token): void
{
    setcookie('access_token', $token, ['httponly' => true]);
}
