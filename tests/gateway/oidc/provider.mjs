// A real OpenID provider for the tests: the npm package oidc-provider on a loopback port.
//
//   node provider.mjs config.json
//
// config.json: {"clients": [...client metadata...], "jwks": {"keys": [private JWK]},
//               "accounts": {"login": ["group", ...]}, "cookieKey": "...",
//               "claimsInIdToken": false}
// claimsInIdToken: the ID token carries the profile and groups claims and there is no userinfo
// endpoint (like Entra ID's roles); else they come from userinfo only (the package's default).
// Prints one JSON line {"issuer": "http://127.0.0.1:<port>"} once it listens; stops on SIGTERM.
// Sign-in uses the package's own login and consent pages (devInteractions): any login name with
// any password; the account's "groups" claim comes from config.accounts (unknown login: none).
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const server = http.createServer();

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: config.jwks,
    cookies: { keys: [config.cookieKey] },
    scopes: ['openid', 'profile', 'groups'],
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
    conformIdTokenClaims: !config.claimsInIdToken,
    features: {
      userinfo: { enabled: !config.claimsInIdToken },
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, name: id, groups: config.accounts[id] ?? [] };
        },
      };
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
