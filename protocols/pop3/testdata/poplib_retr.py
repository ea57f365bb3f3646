# Usage: poplib_retr.py HOST PORT USER SECRET N [plain]
# Prints the hex of message N's bytes as RETR returns them (lines joined
# with CRLF), after USER/PASS (or AUTH PLAIN with "plain").
import base64, binascii, poplib, sys

host, port, user, secret, n = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=20)
if len(sys.argv) > 6 and sys.argv[6] == "plain":
    ir = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode()).decode()
    p._shortcmd("AUTH PLAIN " + ir)
else:
    p.user(user)
    p.pass_(secret)
_, lines, _ = p.retr(int(n))
sys.stdout.write(binascii.hexlify(b"\r\n".join(lines) + b"\r\n").decode())
p.quit()
