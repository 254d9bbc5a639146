// Machine tokens from the demo IdP, for tests that send a bearer token through the stack.
import { basicAuth, machineClient } from './identities.js';

/** An access token of the client_credentials grant (demo-bot, scope api:read, unless told otherwise). */
export async function clientCredentialsToken(issuer: string, clientId: string = machineClient.id, secret: string = machineClient.secret, scope: string = machineClient.scope): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: basicAuth({ id: clientId, secret }), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString(),
  });
  const body = (await res.json()) as { access_token?: string; error?: string };
  if (res.status !== 200 || !body.access_token) throw new Error(`${clientId}: no token from ${issuer} (HTTP ${res.status}, ${body.error ?? 'no error'})`);
  return body.access_token;
}
