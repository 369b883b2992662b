"""Messages that carry no code to check (the admin's test SMS, notices to a user), and the
sentences a user is shown about a send.

They share the send path's log and sender choice (:mod:`.verification`) but none of its
limits or its enumeration rules: only an admin or a signed-in user's own change sends them.
"""

from __future__ import annotations

from ..i18n import gettext as _
from ..phones import Phone
from ..sms import SendResult, SmsMessage
from ..state import get_state
from . import budget
from .codes import generate_code
from .verification import SendOutcome, _message, _record


def send_test_message(phone: Phone) -> SendResult:
    """Send a real code SMS with the saved parameters, for the admin's test button and CLI.

    Raises :class:`~flask_alisms.exceptions.BudgetExhausted` under a budget's hard stop.
    """
    state = get_state()
    budget.enforce(state)
    code = generate_code(state.params.values().code_length)
    sender = state.sender_for_send()
    result = sender.send(_message(state, phone, code, "test"), state.credentials())
    _record(state, phone, "test", result, sender.name)
    return result


def send_notice(phone: Phone, template_code: str, purpose: str) -> SendResult:
    """Send a notice SMS without variables (e.g. "your number was changed"), logged as
    ``purpose``. Test numbers get nothing; a failure is logged and returned, never raised."""
    state = get_state()
    values = state.params.values()
    test = values.test_code(phone.e164) is not None
    sender = state.test_sender if test else state.sender_for_send()
    message = SmsMessage(
        phone=phone.aliyun, sign_name=values.sign_name, template_code=template_code, params={}
    )
    result = sender.send(message, None if test else state.credentials())
    _record(state, phone, purpose, result, sender.name, category="test_number" if test else None)
    return result


def failure_message(outcome: SendOutcome) -> str:
    """The short, safe sentence a user sees when a send failed.

    One sentence whatever the cause: a message per failure would tell a number whose send
    was skipped (no provider answer to explain) from one whose send failed.
    """
    return _("We could not send the SMS right now. Please try again later.")


def late_message() -> str:
    """What a user is told when the provider did not answer in time but may have sent it."""
    return _("The SMS may take a few minutes to arrive. Its code will still work.")
