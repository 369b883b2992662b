"""Blinker signals, sent with the app as sender. None of them ever carries a code or a secret.

Receivers get keyword arguments: ``phone`` (E.164), ``purpose`` ("register", "reset",
"login" or "change_phone") and,
where it applies, ``result`` (a :class:`~flask_alisms.sender.SendResult` without the code),
``reason`` or ``user_id``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: An SMS with a code was accepted by the provider. Extra: ``result``.
code_sent = _signals.signal("alisms.code-sent")
#: The provider refused or could not be reached. Extra: ``result``.
code_send_failed = _signals.signal("alisms.code-send-failed")
#: A submitted code matched and was consumed.
code_verified = _signals.signal("alisms.code-verified")
#: A submitted code was wrong, expired, used or burnt. Extra: ``reason``.
code_rejected = _signals.signal("alisms.code-rejected")
#: A user was created through phone registration. Extra: ``user_id``.
user_registered = _signals.signal("alisms.user-registered")
#: A password was reset through an SMS code. Extra: ``user_id``.
password_reset = _signals.signal("alisms.password-reset")
#: An admin changed parameters. Extra: ``keys`` and ``actor``; never values.
parameters_changed = _signals.signal("alisms.parameters-changed")
#: A user signed in with an SMS code. Extra: ``user_id`` and ``created`` (True when the
#: account was created by this sign-in; :data:`user_registered` is sent too then).
user_signed_in = _signals.signal("alisms.user-signed-in")
#: A signed-in user added or changed their phone. ``phone`` is the new number; extra:
#: ``old_phone`` (E.164, or None when the user had none) and ``user_id``.
phone_changed = _signals.signal("alisms.phone-changed")
#: A code for a test number (``phone.test_numbers``) was "sent": nothing reached Aliyun and
#: :data:`code_sent` is not sent for it.
test_code_sent = _signals.signal("alisms.test-code-sent")
#: A send was refused by one of the site's limits before reaching the provider. Extra:
#: ``rule`` ("phone", "ip" or "global"); no phone number.
send_refused = _signals.signal("alisms.send-refused")
#: A delivery receipt was stored. Extra: ``state`` ("delivered" or "failed") and ``err_code``;
#: no phone number.
receipt_received = _signals.signal("alisms.receipt-received")
#: Send-code brought a solved human check, now spent. Extra: ``kind``, ``client_ip``.
human_check_passed = _signals.signal("alisms.human-check-passed")
#: Send-code was held back for a human check. Extra: ``kind``, ``reason`` ("missing",
#: "expired", "reused", "wrong" or "unavailable"), ``client_ip``.
human_check_refused = _signals.signal("alisms.human-check-refused")
#: A threshold of ``budget.alert_percent`` was crossed, once per threshold and period across
#: every worker. Extra: ``period`` ("day" or "month"), ``percent``, ``spent`` (the committed
#: spend, CNY, a Decimal), ``budget`` (CNY, a Decimal) and ``start`` (the period's first day);
#: no phone number.
budget_alert = _signals.signal("alisms.budget-alert")
#: Matched delivery receipts added segments Aliyun bills. Extra: ``segments`` and ``cost``
#: (CNY at ``billing.price_per_sms``, a Decimal, or None while the price is unknown).
sms_billed = _signals.signal("alisms.sms-billed")
