// The gateway's console endpoints (/console/api/...): what ARCP frames do not carry,
// answered by the core's JobService with this tab's own token, sent as a bearer
// header (never in the URL), so the core authorises exactly as for any client.

export const TOKEN_KEY = "arcp-console.token";

/** A refusal: the ARCP code (§12) and message the core answered with. */
export class ApiError extends Error {
  constructor(status, body) {
    super(`${body.code || status}: ${body.message || "request failed"}`);
    this.status = status;
    this.code = body.code || "";
  }
}

export async function apiGet(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  const reply = await fetch(`/console/api/${name}${query ? `?${query}` : ""}`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` },
    cache: "no-store",
  });
  const body = await reply.json();
  if (!reply.ok) throw new ApiError(reply.status, body);
  return body;
}
