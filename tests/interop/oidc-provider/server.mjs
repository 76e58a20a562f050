// A certified OpenID provider (panva's oidc-provider), for tests/http/test_oidc_interop.py: one
// confidential client, any login accepted by its development interactions (a login form, then
// a consent form), every account with a verified email and a name. Configured through the
// environment by the test: ISSUER (http://127.0.0.1:<port>), PORT, CLIENT_ID, CLIENT_SECRET,
// REDIRECT_URI. Prints "listening" once it accepts connections.
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const { ISSUER, PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // The account of any login: its claims come from userinfo (conformIdTokenClaims, the
  // default: the id_token of a code flow carries only sub and the protocol claims).
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true,
                 name: `Interop ${id}` };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
});

provider.listen(Number(PORT), '127.0.0.1', () => console.log('listening'));
