"""Drives stepgate's IMAP front end with Python's imaplib.

Usage: imaplib_check.py HOST PORT USER SECRET
Checks a LOGIN with a literal password, pipelined commands, CONDSTORE,
and IDLE: it prints "IDLING", then waits on stdin for a line once the
test has delivered a message upstream, and prints "ARRIVED" when the
EXISTS update comes through. Any failure exits non-zero with a reason.
"""
import imaplib
import sys


def main():
    host, port, user, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    m = imaplib.IMAP4(host, port, timeout=20)
    caps = m.capabilities
    if "AUTH=PLAIN" not in caps or "LITERAL+" not in caps:
        sys.exit("pre-login capabilities: %r" % (caps,))
    # A literal for the password (imaplib sends it when told to).
    m.literal = secret.encode()
    typ, data = m._simple_command("LOGIN", user)
    if typ != "OK":
        sys.exit("LOGIN with a literal: %s %r" % (typ, data))
    m.state = "AUTH"
    typ, data = m.capability()
    if typ != "OK" or b"CONDSTORE" not in data[0]:
        sys.exit("post-login capabilities (from the mail server): %r" % (data,))

    # Pipelining: two commands written before any answer is read.
    t1 = m._new_tag()
    t2 = m._new_tag()
    m.send(t1 + b" NOOP\r\n" + t2 + b' STATUS INBOX (MESSAGES)\r\n')
    seen = set()
    while len(seen) < 2:
        line = m.readline()
        for t in (t1, t2):
            if line.startswith(t + b" OK"):
                seen.add(t)
            elif line.startswith(t + b" "):
                sys.exit("pipelined command failed: %r" % line)

    # CONDSTORE as the upstream allows it.
    typ, data = m._simple_command("SELECT", "INBOX", "(CONDSTORE)")
    if typ != "OK":
        sys.exit("SELECT INBOX (CONDSTORE): %s %r" % (typ, data))
    untagged = repr(m.untagged_responses)
    if "HIGHESTMODSEQ" not in untagged:
        sys.exit("no HIGHESTMODSEQ after SELECT (CONDSTORE): %s" % untagged)

    # IDLE, by hand (imaplib gained idle() only in 3.14).
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    if not line.startswith(b"+"):
        sys.exit("IDLE: %r" % line)
    print("IDLING", flush=True)
    sys.stdin.readline()
    while True:
        line = m.readline()
        if not line:
            sys.exit("connection closed during IDLE")
        if line.startswith(b"*") and b"EXISTS" in line:
            break
    print("ARRIVED", flush=True)
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag):
        pass
    m.logout()


if __name__ == "__main__":
    main()
