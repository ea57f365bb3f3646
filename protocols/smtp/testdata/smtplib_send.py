# Usage: smtplib_send.py HOST PORT USER SECRET FROM TO FILE
# Sends FILE's bytes as one message with smtplib (EHLO, AUTH, MAIL, RCPT,
# DATA), as a mail client would.
import smtplib, sys

host, port, user, secret, frm, to, path = sys.argv[1:8]
with open(path, "rb") as f:
    msg = f.read()
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("client.example.org")
s.login(user, secret)
s.sendmail(frm, [to], msg)
s.quit()
