import React, { useState } from 'react';
import { SignJWT } from 'jose';

// The app mints its own "session" token: anyone with the bundle can do the same.
export function Login({ user }) {
  const [token, setToken] = useState(null);
  async function signIn() {
    const jwt = await new SignJWT({ sub: user.id, role: 'customer' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('2h')
      .sign(new TextEncoder().encode('client-side-signing-secret-0123456789abcdef'));
    setToken(jwt);
  }
  return <button onClick={signIn}>Sign in</button>;
}
