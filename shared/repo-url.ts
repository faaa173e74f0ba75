// Credentials embedded in repository URLs (`https://user:TOKEN@git.example.com/x.git`,
// `https://TOKEN@github.com/x.git`). The full URL is a secret: the control plane stores it sealed
// and sends it only to the app's own agent; everywhere a URL is shown or logged it is masked.

// scheme://USERINFO@ — the authority ends at the first "/", "?", "#" or whitespace, and the userinfo
// at its last "@" (as URL parsers read it: an unencoded "@" in a password stays hidden).
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]+)@/gi;

function maskUserinfo(scheme: string, userinfo: string): string {
  const colon = userinfo.indexOf(':');
  // user:password → keep the user name (it says which account), hide the password.
  if (colon >= 0) return `${userinfo.slice(0, colon)}:***`;
  // A lone user name is a token over HTTP(S) (GitHub, GitLab); over ssh:// it is the login (git@).
  return /^https?:\/\/$/i.test(scheme) ? '***' : userinfo;
}

/** `text` with the credential part of every URL in it replaced by `***`; usable on log lines and error messages. */
export function maskUrlCredentials(text: string): string {
  return text.replace(USERINFO, (_all, scheme: string, userinfo: string) => `${scheme}${maskUserinfo(scheme, userinfo)}@`);
}

/** Whether showing `url` would reveal a secret (a password, or a token as the HTTP(S) user name). */
export function hasUrlCredentials(url: string): boolean {
  return maskUrlCredentials(url) !== url;
}
