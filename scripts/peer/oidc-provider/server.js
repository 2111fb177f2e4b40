// A peer for scripts/bench-peer: node oidc-provider (the version pinned in package.json, in-memory store) set up
// to do what `tessera-bench client-credentials` measures and nothing else: the client_credentials grant with
// client_secret_post, issuing a 60 s JWT access token (RFC 9068) for one resource with scope `read`, signed with a
// key generated at start.
//
//   node server.js ALG [PORT]        ALG: ES256, RS256 or EdDSA; PORT: default 0 (any free port)
//
// Listens on 127.0.0.1 only and prints `listening on http://127.0.0.1:PORT` on stdout once it answers. The token
// endpoint is POST /token, e.g.
//   curl -s 127.0.0.1:PORT/token -d grant_type=client_credentials -d client_id=bench \
//        -d client_secret=$PEER_CLIENT_SECRET -d resource=urn:tessera-bench:api -d scope=read
//
// Environment: PEER_CLIENT_SECRET (the client's secret; a fixed default for runs by hand), PEER_PROCESSES (node
// processes sharing the port through the cluster module, default 1: one process is one JavaScript thread, though
// signing runs on libuv's thread pool).
//
// oidc-provider 9 prints a warning on Node 20 ("Unsupported runtime", it asks for Node 22 LTS) and one about its
// in-memory adapter; both are expected here (the adapter holds nothing: JWT access tokens are not stored and the
// client is static), so exactly those two are filtered out. Every other warning gets through.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import http from 'node:http';

const EXPECTED_WARNINGS = [
  'oidc-provider WARNING: Unsupported runtime.',
  'oidc-provider WARNING: a quick start development-only in-memory adapter is used',
];
const warn = console.warn;
console.warn = (first, ...rest) => {
  if (typeof first === 'string' && EXPECTED_WARNINGS.some((w) => first.startsWith(w))) return;
  warn(first, ...rest);
};
// Imported after the filter: the runtime warning is printed at import.
const { default: Provider, errors } = await import('oidc-provider');

/** The resource indicator (RFC 8707 wants an absolute URI) and the audience its tokens carry. */
const RESOURCE = 'urn:tessera-bench:api';
const AUDIENCE = 'api';
const SECRET = process.env.PEER_CLIENT_SECRET || 'bench-peer-secret-0123456789abcdef';

const [alg = 'ES256', portText = '0'] = process.argv.slice(2);
const port = Number(portText);
const processes = Number(process.env.PEER_PROCESSES || '1');
if (!['ES256', 'RS256', 'EdDSA'].includes(alg) || !Number.isInteger(port) || !(processes >= 1)) {
  console.error('usage: [PEER_PROCESSES=N] node server.js ES256|RS256|EdDSA [PORT]');
  process.exit(2);
}

/** A private signing JWK for `alg`, generated now. */
function signingJwk() {
  const { privateKey } = alg === 'RS256'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : crypto.generateKeyPairSync('ed25519');
  return { ...privateKey.export({ format: 'jwk' }), use: 'sig', kid: crypto.randomUUID() };
}

// One key for every process: the primary generates it and hands it to the cluster workers.
const jwk = process.env.PEER_JWK ? JSON.parse(process.env.PEER_JWK) : signingJwk();

function provider(issuer) {
  return new Provider(issuer, {
    clients: [{
      client_id: 'bench',
      client_secret: SECRET,
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'read',
    }],
    clientDefaults: { id_token_signed_response_alg: alg },
    jwks: { keys: [jwk] },
    scopes: ['read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'read', audience: AUDIENCE, accessTokenFormat: 'jwt', accessTokenTTL: 60, jwt: { sign: { alg } },
          };
        },
      },
    },
  });
}

/** Listens, then attaches the provider (its issuer names the actual port); `ready(port)` once it answers. */
function serve(ready) {
  const server = http.createServer();
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => {
    const actual = server.address().port;
    server.on('request', provider(`http://127.0.0.1:${actual}`).callback());
    ready(actual);
  });
}

const announce = (actual) => console.log(`listening on http://127.0.0.1:${actual}`);

if (processes === 1) {
  serve(announce);
} else if (cluster.isPrimary) {
  // Workers share the port (with port 0 the cluster gives every worker the same one); the primary hands out
  // connections round-robin.
  let ready = 0;
  cluster.on('message', (_worker, message) => {
    if (message?.ready && ++ready === processes) announce(message.ready);
  });
  cluster.on('exit', (_worker, code, signal) => {
    console.error(`oidc-provider worker exited (${signal || code})`);
    process.exit(1);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      cluster.removeAllListeners('exit');
      for (const worker of Object.values(cluster.workers)) worker.process.kill();
      process.exit(0);
    });
  }
  for (let i = 0; i < processes; i += 1) cluster.fork({ PEER_JWK: JSON.stringify(jwk) });
} else {
  serve((actual) => process.send({ ready: actual }));
}
