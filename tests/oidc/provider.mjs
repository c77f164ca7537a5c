// A real OpenID Provider for tests: panva/oidc-provider over HTTPS on loopback, with one
// confidential client (PKCE required), a fixed set of accounts, and the development login
// and consent pages. Used by the collector's OIDC integration test
// (collector/tests/it/oidc.rs) and meant for the console's browser test. Never for
// production: the login page accepts any password.
//
// Run (after `npm ci` in this folder; .ci/install-deps does it):
//
//   node tests/oidc/provider.mjs --cert CERT.pem --key KEY.pem [--port 0]
//
// Every option is also an environment variable (a flag wins):
//
//   --cert / OIDC_CERT            PEM certificate chain for the HTTPS listener (required);
//                                 it must name 127.0.0.1 (an IP SAN), as the issuer does.
//   --key / OIDC_KEY              PEM private key (required).
//   --host / OIDC_HOST            address to listen on, default 127.0.0.1.
//   --port / OIDC_PORT            port, default 0 (a free port).
//   --client-id / OIDC_CLIENT_ID            default "aiscout".
//   --client-secret / OIDC_CLIENT_SECRET    default "aiscout-test-secret".
//   --redirect-uri / OIDC_REDIRECT_URI      the client's redirect URIs, comma separated
//                                           (required).
//   --client-auth / OIDC_CLIENT_AUTH        client_secret_basic (default) or
//                                           client_secret_post; the only method the
//                                           provider advertises and the client may use.
//   --id-token-alg / OIDC_ID_TOKEN_ALG      RS256 (default) or ES256.
//   --skip-consent / OIDC_SKIP_CONSENT=1    grant every scope without the consent page.
//   --groups-in-userinfo-only / OIDC_GROUPS_IN_USERINFO_ONLY=1
//                                           leave `groups` out of the ID token, so a relying
//                                           party must read it from the userinfo endpoint.
//   OIDC_USERS                    JSON array of accounts, each
//                                 {"sub","email","name","groups":[...]}; default one account:
//                                 [{"sub":"alice","email":"alice@example.com","name":"Alice",
//                                   "groups":["secops"]}]
//
// Output: the first stdout line is exactly `listening https://HOST:PORT`, which is also the
// issuer (discovery at https://HOST:PORT/.well-known/openid-configuration). Everything
// else, including oidc-provider's notices, goes to stderr. The process runs until killed.
//
// Claims: scopes openid, email (email, email_verified), profile (name, groups) and groups
// (groups). Claims are put in the ID token (conformIdTokenClaims: false), as well as in
// userinfo.
//
// Driving the login from a browser (the interaction pages below, plain HTML, no JavaScript):
//
//   1. The authorization request redirects (303) to /interaction/UID, a "Sign-in" page:
//        <form id="login" method="post" action="/interaction/UID">
//          input[name="prompt"][value="login"]  hidden
//          input[name="login"]                  fill with an account's `sub` (e.g. "alice")
//          input[name="password"]               fill with anything (ignored, but required)
//          button[type="submit"].login-submit   click ("Sign-in")
//      A login that is no configured `sub` shows the page again, with status 401 and
//      p.error ("unknown user").
//   2. Unless consent is skipped, an "Authorize" page follows:
//        <form id="consent" method="post" action="/interaction/UID">
//          input[name="prompt"][value="consent"]  hidden
//          button[type="submit"].login-submit     click ("Continue")
//   3. The browser is redirected to the redirect URI with ?code=...&state=...&iss=...
//
// One selector works on both pages: `button.login-submit`; the login page is recognised by
// `form#login` (or `input[name="login"]`), the consent page by `form#consent`. The pages
// load nothing else. Cookies: the provider's interaction and session cookies are Secure,
// HttpOnly and SameSite=Lax on its own host.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { once } from 'node:events';

import Provider from 'oidc-provider';

// stdout carries only the `listening` line: oidc-provider prints notices with console.info.
console.info = (...args) => console.error(...args);

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

function options() {
  const known = {
    cert: 'OIDC_CERT',
    key: 'OIDC_KEY',
    host: 'OIDC_HOST',
    port: 'OIDC_PORT',
    'client-id': 'OIDC_CLIENT_ID',
    'client-secret': 'OIDC_CLIENT_SECRET',
    'redirect-uri': 'OIDC_REDIRECT_URI',
    'client-auth': 'OIDC_CLIENT_AUTH',
    'id-token-alg': 'OIDC_ID_TOKEN_ALG',
    'skip-consent': 'OIDC_SKIP_CONSENT',
    'groups-in-userinfo-only': 'OIDC_GROUPS_IN_USERINFO_ONLY',
  };
  const flags = new Set(['skip-consent', 'groups-in-userinfo-only']);
  const out = {};
  for (const [name, env] of Object.entries(known)) {
    if (process.env[env] !== undefined && process.env[env] !== '') out[name] = process.env[env];
  }
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i];
    if (!arg.startsWith('--')) fail(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!(name in known)) fail(`unknown option --${name}`);
    if (eq !== -1) {
      out[name] = arg.slice(eq + 1);
    } else if (flags.has(name)) {
      out[name] = '1';
    } else {
      i += 1;
      if (i >= args.length) fail(`--${name} needs a value`);
      out[name] = args[i];
    }
  }
  return out;
}

const opt = options();
const truthy = (v) => v !== undefined && v !== '0' && v !== 'false';
if (!opt.cert || !opt.key) fail('--cert and --key (or OIDC_CERT and OIDC_KEY) are required');
if (!opt['redirect-uri']) fail('--redirect-uri (or OIDC_REDIRECT_URI) is required');
const host = opt.host ?? '127.0.0.1';
const port = Number.parseInt(opt.port ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${opt.port}`);
const clientAuth = opt['client-auth'] ?? 'client_secret_basic';
if (!['client_secret_basic', 'client_secret_post'].includes(clientAuth)) {
  fail(`--client-auth must be client_secret_basic or client_secret_post, not ${clientAuth}`);
}
const idTokenAlg = opt['id-token-alg'] ?? 'RS256';
if (!['RS256', 'ES256'].includes(idTokenAlg)) fail(`--id-token-alg must be RS256 or ES256`);
const groupsInUserinfoOnly = truthy(opt['groups-in-userinfo-only']);
const skipConsent = truthy(opt['skip-consent']);

let users;
try {
  users = JSON.parse(process.env.OIDC_USERS
    ?? '[{"sub":"alice","email":"alice@example.com","name":"Alice","groups":["secops"]}]');
} catch (e) {
  fail(`OIDC_USERS is not JSON: ${e.message}`);
}
if (!Array.isArray(users) || users.some((u) => typeof u?.sub !== 'string' || u.sub === '')) {
  fail('OIDC_USERS must be an array of objects with a non-empty string "sub"');
}
const accounts = new Map(users.map((u) => [u.sub, u]));

// Fresh signing keys on every start: one RSA and one P-256 key, so either algorithm can sign.
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const jwks = {
  keys: [
    { ...rsa, kid: `rsa-${randomUUID()}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${randomUUID()}`, alg: 'ES256', use: 'sig' },
  ],
};

const server = createServer({
  cert: readFileSync(opt.cert),
  key: readFileSync(opt.key),
});
server.listen(port, host);
await once(server, 'listening');
const address = server.address();
const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
const issuer = `https://${hostForUrl}:${address.port}`;

const configuration = {
  clients: [{
    client_id: opt['client-id'] ?? 'aiscout',
    client_secret: opt['client-secret'] ?? 'aiscout-test-secret',
    redirect_uris: opt['redirect-uri'].split(',').map((s) => s.trim()).filter(Boolean),
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: clientAuth,
    id_token_signed_response_alg: idTokenAlg,
  }],
  clientAuthMethods: [clientAuth],
  pkce: { required: () => true },
  jwks,
  cookies: { keys: [randomUUID()] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  features: {
    // The interaction pages are ours (below), so that an unknown login is refused cleanly.
    devInteractions: { enabled: false },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, sub) {
    const user = accounts.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims(use) {
        const claims = { sub };
        if (user.email !== undefined) {
          claims.email = user.email;
          claims.email_verified = true;
        }
        if (user.name !== undefined) claims.name = user.name;
        if (user.groups !== undefined && !(use === 'id_token' && groupsInUserinfoOnly)) {
          claims.groups = user.groups;
        }
        return claims;
      },
    };
  },
};
const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, err) => console.error('provider.mjs: server_error', err));
const oidc = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error('provider.mjs: interaction failed:', err.message);
      if (!res.headersSent) page(res, 400, 'Error', `<p class="error">${escape(err.message)}</p>`);
    });
  } else {
    oidc(req, res);
  }
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><h1>${escape(title)}</h1>
${body}
</body></html>
`;
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function loginPage(res, uid, status, error) {
  const message = error ? `<p class="error" role="alert">${escape(error)}</p>\n` : '';
  page(res, status, 'Sign-in', `${message}<form id="login" autocomplete="off" method="post" action="/interaction/${escape(uid)}">
  <input type="hidden" name="prompt" value="login">
  <input required type="text" name="login" placeholder="user name" autofocus>
  <input required type="password" name="password" placeholder="any password">
  <button type="submit" class="login login-submit">Sign-in</button>
</form>`);
}

function consentPage(res, uid, clientId, scopes) {
  page(res, 200, 'Authorize', `<p>${escape(clientId)} asks for: ${escape(scopes.join(' '))}</p>
<form id="consent" autocomplete="off" method="post" action="/interaction/${escape(uid)}">
  <input type="hidden" name="prompt" value="consent">
  <button type="submit" class="login login-submit">Continue</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Grants what the client asked for, as the user's consent.
async function consent(details) {
  const { grantId, params, session, prompt } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  if (prompt.details.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(prompt.details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
  }
  return { consent: { grantId: await grant.save() } };
}

async function interaction(req, res) {
  // Throws (answered with 400) when the interaction cookie is missing or expired.
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      loginPage(res, uid, 200);
    } else if (prompt.name === 'consent' && skipConsent) {
      await provider.interactionFinished(req, res, await consent(details), {
        mergeWithLastSubmission: true,
      });
    } else if (prompt.name === 'consent') {
      consentPage(res, uid, params.client_id, String(params.scope ?? '').split(' '));
    } else {
      page(res, 501, 'Error', `<p class="error">prompt ${escape(prompt.name)} is not handled</p>`);
    }
    return;
  }
  if (req.method !== 'POST') {
    page(res, 405, 'Error', '<p class="error">method not allowed</p>');
    return;
  }
  const form = await readForm(req);
  if (form.get('prompt') === 'login' && prompt.name === 'login') {
    const login = form.get('login') ?? '';
    if (!accounts.has(login)) {
      loginPage(res, uid, 401, 'unknown user');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
  } else if (form.get('prompt') === 'consent' && prompt.name === 'consent') {
    await provider.interactionFinished(req, res, await consent(details), {
      mergeWithLastSubmission: true,
    });
  } else {
    page(res, 400, 'Error', `<p class="error">the form does not answer prompt ${escape(prompt.name)}</p>`);
  }
}

console.log(`listening ${issuer}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
