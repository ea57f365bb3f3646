"""A mail client that retries as neomutt does: AUTHENTICATE PLAIN twice,
then LOGIN, on one connection, with the password it has stored; run it
N times (N starts of the client). Prints one line per try: OK or NO."""
import imaplib
import sys

host, port, user, secret, starts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
for _ in range(starts):
    m = imaplib.IMAP4(host, port)
    tries = [
        lambda: m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, secret)).encode()),
        lambda: m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, secret)).encode()),
        lambda: m.login(user, secret),
    ]
    for t in tries:
        try:
            t()
            print("OK", flush=True)
            break
        except imaplib.IMAP4.abort:
            print("BYE", flush=True)
            break
        except imaplib.IMAP4.error as e:
            print("NO", str(e), flush=True)
    try:
        m.logout()
    except Exception:
        pass
