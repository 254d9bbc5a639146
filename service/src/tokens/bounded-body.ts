// Answers from the identity provider (JWKS, discovery, introspection) are read with a bound: a body is
// counted as it arrives and the read stops, the connection with it, at the first chunk past the bound. A
// broken or hostile endpoint can then neither fill idgate's memory nor keep a read going by streaming an
// endless body (the fetch timeout alone would let it send as much as it can in that time).

/** Thrown when a body is over its bound: the message names the bound, never the body. */
export class BodyTooLarge extends Error {
  constructor(readonly limitBytes: number) {
    super(`answer larger than ${limitBytes} bytes`);
    this.name = 'BodyTooLarge';
  }
}

/**
 * The body of `res` as UTF-8 text, read at most `limitBytes` bytes: refused unread when Content-Length
 * says more, else read chunk by chunk and cancelled at the first chunk over. Throws BodyTooLarge.
 */
export async function readBoundedText(res: Response, limitBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > limitBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new BodyTooLarge(limitBytes);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limitBytes) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLarge(limitBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Drops a body idgate does not read (an error answer), without reading it. */
export async function discardBody(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}
