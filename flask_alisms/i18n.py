"""English and Simplified Chinese for the extension's pages, without a Babel dependency.

The English text is the message id: the code and the templates are written in English, and
:data:`ZH` maps each sentence to its Chinese form. A missing entry falls back to the English
text, so a forgotten translation degrades to English rather than to an error. Messages built at
run time (``f"Saved: {keys}."``) are matched by :data:`PATTERNS` so that the views can keep
flashing plain English.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, has_app_context, has_request_context, request

__all__ = ["LANGUAGES", "PATTERNS", "ZH", "current_language", "gettext", "install", "translate"]

#: The languages the pages come in; "en" is also the fallback.
LANGUAGES = ("en", "zh")

# What the browser's Accept-Language is matched against; every "zh*" tag means Chinese.
_ACCEPTED = ["en", "zh", "zh-CN", "zh-Hans"]

#: English text -> Simplified Chinese. Entries may use ``%(name)s`` placeholders.
ZH: dict[str, str] = {
    # -- layout and navigation
    "Skip to content": "跳到正文",
    "Success:": "成功：",
    "Error:": "错误：",
    "Note:": "提示：",
    "SMS sign-up": "短信注册",
    "Admin": "管理",
    "Admin sections": "管理页面",
    "Parameters": "参数",
    "Test SMS": "测试短信",
    "Send log": "发送记录",
    "Unavailable": "暂不可用",
    "The form expired. Please submit it again.": "表单已过期，请重新提交。",
    # -- registration and password reset pages
    "Create an account": "注册账号",
    "Sign up with your mobile number: we text you a code to confirm it.": (
        "使用手机号注册：我们会向你发送短信验证码以确认号码。"
    ),
    "Reset your password": "重置密码",
    "Enter the mobile number of your account: we text you a code to set a new password.": (
        "输入账号绑定的手机号：我们会向你发送验证码，用于设置新密码。"
    ),
    "We text a %(length)s-digit code to this number.": "我们会向此号码发送 %(length)s 位验证码。",
    "Enter the %(length)s-digit code from the SMS.": "请输入短信中的 %(length)s 位验证码。",
    "At least %(count)s characters, mixing letters with digits or symbols.": (
        "至少 %(count)s 个字符，须包含字母以及数字或符号。"
    ),
    "Send again in %(seconds)ss": "%(seconds)s 秒后可重新发送",
    "Already registered and forgot your password?": "已经注册但忘记了密码？",
    "Reset it by SMS": "通过短信重置",
    "No account yet?": "还没有账号？",
    "Create one with your mobile number": "用手机号注册一个",
    # -- form fields (forms.py)
    "Country code": "国家/地区代码",
    "Mobile number": "手机号",
    "Send code": "获取验证码",
    "Verification code": "验证码",
    "Password": "密码",
    "New password": "新密码",
    "Register": "注册",
    "Set new password": "设置新密码",
    "Send test SMS": "发送测试短信",
    "Outcome": "结果",
    "Purpose": "用途",
    "Number ends with": "号码尾号",
    "Period": "时间范围",
    "Any": "全部",
    "register": "注册",
    "reset": "重置密码",
    "test": "测试",
    "24 hours": "24 小时",
    "7 days": "7 天",
    "30 days": "30 天",
    "1 year": "1 年",
    "Digits only.": "只能输入数字。",
    "Save": "保存",
    "Remove the stored secret": "删除已保存的 Secret",
    # -- messages from views.py, accounts.py, phones.py and errors.py
    "Registration by phone is closed on this site.": "本站暂未开放手机号注册。",
    "SMS is not set up on this site yet. Please try again later.": (
        "本站尚未配置短信服务，请稍后再试。"
    ),
    "Sending codes is paused for a moment. Please try again shortly.": (
        "验证码发送暂时暂停，请稍后再试。"
    ),
    "Your code could not be saved. Please request a new one in a minute.": (
        "验证码未能保存，请一分钟后重新获取。"
    ),
    "We could not send the SMS right now. Please try again later.": (
        "暂时无法发送短信，请稍后再试。"
    ),
    "Too many codes were requested for this number. Please try again later.": (
        "此号码请求验证码过于频繁，请稍后再试。"
    ),
    "This phone number cannot receive SMS.": "此号码无法接收短信。",
    "We sent a code by SMS. It is valid for a few minutes.": "验证码已通过短信发送，几分钟内有效。",
    "Welcome! Your account is ready.": "欢迎！你的账号已创建。",
    "Your password was changed.": "密码已修改。",
    "Nothing changed.": "没有任何修改。",
    "Enter a password.": "请输入密码。",
    "Mix letters with digits or symbols.": "密码须包含字母以及数字或符号。",
    "Use letters, digits, spaces and symbols only.": "密码只能包含字母、数字、空格和符号。",
    "Remove the invalid characters.": "请删除无效字符。",
    "Too many attempts for this number. Please try again later.": (
        "此号码尝试次数过多，请稍后再试。"
    ),
    "The code is wrong or has expired. Request a new code if needed.": (
        "验证码错误或已过期，如有需要请重新获取。"
    ),
    "This number already has an account. Sign in instead.": "此号码已注册，请直接登录。",
    "Your account could not be created. Please request a new code and try again.": (
        "账号创建失败，请重新获取验证码后再试。"
    ),
    "Your password could not be changed. Please request a new code and try again.": (
        "密码修改失败，请重新获取验证码后再试。"
    ),
    "Enter a mobile phone number.": "请输入手机号。",
    "That phone number is too long.": "手机号太长。",
    "Choose a country code from the list.": "请从列表中选择国家/地区代码。",
    "That is not a valid phone number.": "这不是有效的手机号。",
    "Numbers from this country cannot be used here.": "本站不支持该国家/地区的号码。",
    "Enter a mobile number; SMS cannot reach this one.": "请输入手机号码，此号码无法接收短信。",
    # -- WTForms and Flask-WTF validation messages
    "This field is required.": "此项为必填项。",
    "Not a valid choice.": "不是有效的选项。",
    "Invalid input.": "输入无效。",
    "The CSRF token is missing.": "缺少 CSRF 令牌，请刷新页面后重试。",
    "The CSRF session token is missing.": "会话中缺少 CSRF 令牌，请刷新页面后重试。",
    "The CSRF token has expired.": "CSRF 令牌已过期，请刷新页面后重试。",
    "The CSRF token is invalid.": "CSRF 令牌无效，请刷新页面后重试。",
    "The CSRF tokens do not match.": "CSRF 令牌不匹配，请刷新页面后重试。",
    # -- admin: parameters page
    "SMS parameters": "短信参数",
    "Changes apply within seconds, without a restart. Values fixed in the app config are "
    "shown but cannot be edited here.": (
        "修改会在数秒内生效，无需重启。在应用配置中固定的值会显示出来，但不能在这里修改。"
    ),
    "Status": "状态",
    "Mobile registration": "手机号注册",
    "On": "已开启",
    "Off": "未开启",
    "New users can sign up with an SMS code now.": "新用户现在可以通过短信验证码注册。",
    "The sign-up page says registration is closed until every checklist item below shows ✓.": (
        "在下方检查清单的每一项都显示 ✓ 之前，注册页面会提示注册已关闭。"
    ),
    "Sender": "发送通道",
    "Messages go to Alibaba Cloud SMS.": "短信通过阿里云短信服务发送。",
    "This sender does not deliver real SMS; it is meant for development and tests.": (
        "此发送通道不会发出真实短信，仅用于开发和测试。"
    ),
    "Last test SMS": "最近一次测试短信",
    "Accepted": "已受理",
    "Failed": "失败",
    "No test SMS has been sent yet.": "尚未发送过测试短信。",
    "Send a test SMS": "发送测试短信",
    "Open the send log": "查看发送记录",
    "Checklist": "检查清单",
    "After you fill in all the parameters below and save, every line here should show ✓. "
    "Then send a test SMS to confirm that Aliyun accepts them.": (
        "填写并保存下方所有参数后，这里的每一行都应显示 ✓。"
        "然后发送一条测试短信，确认阿里云接受这些参数。"
    ),
    "%(done)s of %(total)s done": "已完成 %(done)s / %(total)s 项",
    "Done:": "已完成：",
    "Missing:": "未完成：",
    "Nothing was saved: correct the fields marked below.": "未保存任何内容：请修改下方标出的字段。",
    "Shown in part; type the whole ID to replace it.": (
        "此处只显示部分内容；如需更换，请输入完整的 ID。"
    ),
    "Stored; type a new secret to replace it": "已保存；输入新的 Secret 即可替换",
    "Paste the secret here": "在此粘贴 Secret",
    "Fixed by the app config": "已在应用配置中固定",
    "Set": "已设置",
    "Not set": "未设置",
    "Required": "必填",
    "Source:": "来源：",
    "App config (ALISMS_PARAMS), read-only": "应用配置（ALISMS_PARAMS），只读",
    "Saved in this panel": "在本面板中保存",
    "App config default (ALISMS_PARAM_DEFAULTS)": "应用配置默认值（ALISMS_PARAM_DEFAULTS）",
    "Built-in default": "内置默认值",
    "Leave a secret blank to keep the stored one.": "Secret 留空则保留已保存的值。",
    "Recent changes": "最近修改",
    "When (UTC)": "时间（UTC）",
    "Parameter": "参数",
    "Action": "操作",
    "New value": "新值",
    "By": "操作人",
    "set": "设置",
    "removed": "删除",
    "(not shown)": "（不显示）",
    "No parameter has been changed in this panel yet.": "尚未在本面板中修改过任何参数。",
    "Set it to true to let new users sign up.": "设为 true 以允许新用户注册。",
    "Set it to true once every Aliyun parameter is filled in.": "填好所有阿里云参数后设为 true。",
    "Registration allowed": "允许注册",
    "Mobile registration switch": "手机号注册开关",
    "User adapter": "用户适配器",
    "The site passes AliSMS(user_adapter=...) so users can be found and created.": (
        "网站需传入 AliSMS(user_adapter=...)，以便查找和创建用户。"
    ),
    # -- admin: parameter groups, labels and help (settings.py)
    "Signature": "签名",
    "Template": "模板",
    "AccessKey": "AccessKey",
    "Registration switches": "注册开关",
    "Verification codes": "验证码",
    "Send limits": "发送限制",
    "Phone numbers": "手机号",
    "Signature name": "签名名称",
    "The approved SMS signature (签名名称) exactly as the SMS console lists it.": (
        "已审核通过的短信签名名称，须与短信控制台中显示的完全一致。"
    ),
    "Verification code template": "验证码模板",
    "The approved verification-code template's code (模版CODE), e.g. SMS_154950909.": (
        "已审核通过的验证码模板的模版CODE，例如 SMS_154950909。"
    ),
    "Template variable": "模板变量",
    "The template's variable that receives the code, without ${}: usually code.": (
        "模板中接收验证码的变量名，不含 ${}：通常是 code。"
    ),
    "AccessKey ID": "AccessKey ID",
    "A RAM user's AccessKey ID; the user needs the AliyunDysmsFullAccess policy.": (
        "RAM 用户的 AccessKey ID；该用户需要 AliyunDysmsFullAccess 权限策略。"
    ),
    "AccessKey secret": "AccessKey Secret",
    "Shown once when the AccessKey is created. Stored encrypted; never shown again.": (
        "仅在创建 AccessKey 时显示一次。加密保存，之后不再显示。"
    ),
    "Allow user registration": "允许用户注册",
    "Master switch for new accounts (true or false).": "新账号注册的总开关（true 或 false）。",
    "Enable mobile registration": "启用手机号注册",
    "Sign-up by phone with an SMS code; needs every Aliyun parameter above (true/false).": (
        "用手机号和短信验证码注册；须先填好上面所有阿里云参数（true/false）。"
    ),
    "Code length": "验证码位数",
    "Digits in a code; Aliyun's code templates take 4 to 8.": (
        "验证码的位数；阿里云验证码模板支持 4 到 8 位。"
    ),
    "Code lifetime (seconds)": "验证码有效期（秒）",
    "How long a code can be used after it was sent.": "验证码发送后可以使用多长时间。",
    "Wrong tries per code": "每个验证码可输错次数",
    "After this many wrong tries the code is burnt and a new one is needed.": (
        "输错达到此次数后验证码作废，需要重新获取。"
    ),
    "Resend interval (seconds)": "重发间隔（秒）",
    "Minimum wait between two codes to one number (Aliyun allows 1 per minute).": (
        "向同一号码发送两次验证码的最短间隔（阿里云限制每分钟 1 条）。"
    ),
    "Codes per number per hour": "每个号码每小时条数",
    "Aliyun's own default is 5; keep this at or below it.": "阿里云默认为 5 条；请勿超过该值。",
    "Codes per number per day": "每个号码每天条数",
    "Aliyun's own default is 10; keep this at or below it.": "阿里云默认为 10 条；请勿超过该值。",
    "Codes per client IP per hour": "每个客户端 IP 每小时条数",
    "Stops one client from spraying codes at many numbers.": "防止单个客户端向大量号码发送验证码。",
    "Daily budget (all numbers)": "每日总量（所有号码）",
    "Total codes per day for the whole site: a ceiling on the SMS bill.": (
        "全站每天发送验证码的总条数，也就是短信费用的上限。"
    ),
    "Code checks per number per hour": "每个号码每小时校验次数",
    "Bounds guessing across several codes.": "限制跨多个验证码的猜测尝试。",
    "Allowed country codes": "允许的国家/地区代码",
    "Comma-separated calling codes users may register with; 86 is mainland China.": (
        "用户可用于注册的国家/地区电话代码，以逗号分隔；中国大陆为 86。"
    ),
    # -- admin: parameter validation (settings.py)
    "must look like SMS_154950909": "格式应类似 SMS_154950909",
    "must be a variable name such as code": "必须是变量名，例如 code",
    "must be letters and digits only, as the RAM console shows it": (
        "只能包含字母和数字，与 RAM 控制台显示的一致"
    ),
    "must be the secret exactly as the RAM console showed it, no spaces": (
        "必须与 RAM 控制台显示的 Secret 完全一致，不含空格"
    ),
    "must be true or false": "必须是 true 或 false",
    "must be a comma-separated list of country calling codes, e.g. 86,852": (
        "必须是以逗号分隔的国家/地区电话代码，例如 86,852"
    ),
    "needs at least one country calling code, e.g. 86": "至少需要一个国家/地区电话代码，例如 86",
    "must be a whole number": "必须是整数",
    "must be text": "必须是文本",
    "must be one line without control characters": "必须是单行文本，不能包含控制字符",
    "has the wrong format": "格式不正确",
    "unknown parameter; `flask alisms params show` lists them": (
        "未知参数；`flask alisms params show` 会列出所有参数"
    ),
    "is fixed by ALISMS_PARAMS in the app config; change it there": (
        "已由应用配置中的 ALISMS_PARAMS 固定，请在那里修改"
    ),
    # -- admin: test SMS page
    "This sends a real verification-code SMS with the saved parameters, so it counts against "
    "your Aliyun quota and per-number limits. Use your own phone.": (
        "这会使用已保存的参数发送一条真实的验证码短信，计入阿里云的发送额度和单号码频率限制。"
        "请使用你自己的手机号。"
    ),
    "Sender in use:": "当前发送通道：",
    "no real SMS": "不发送真实短信",
    "Aliyun accepted the message": "阿里云已受理该短信",
    "The message was not sent": "短信未发送",
    "Check the phone: the SMS should arrive within a minute. If it does not, look up the "
    "BizId in the SMS console's delivery reports.": (
        "请查看手机：短信通常在一分钟内送达。"
        "如未收到，可在短信控制台的发送记录中按 BizId 查询回执。"
    ),
    "Problem:": "问题类别：",
    "What to do:": "处理方法：",
    "Users see:": "用户看到的提示：",
    "Code": "返回码",
    "Message": "返回信息",
    "HTTP status": "HTTP 状态码",
    "Request ID": "请求 ID",
    "BizId": "回执 ID（BizId）",
    "Duration": "耗时",
    "%(ms)s ms": "%(ms)s 毫秒",
    "Earlier test messages in the send log": "在发送记录中查看以往的测试短信",
    # -- admin: send log page
    "Every SMS attempt and what Aliyun answered. Numbers are masked and codes are never "
    "stored. Times are UTC.": (
        "每一次短信发送尝试及阿里云的应答。号码已部分隐藏，验证码从不保存。时间为 UTC。"
    ),
    "Summary": "概况",
    "Last 24 hours": "最近 24 小时",
    "Last 7 days": "最近 7 天",
    "failed": "失败",
    "Filter the log": "筛选记录",
    "Filter": "筛选",
    "Clear filters": "清除筛选",
    "%(total)s matching attempts": "共 %(total)s 条匹配记录",
    "Time": "时间",
    "Number": "号码",
    "Result": "结果",
    "HTTP": "HTTP",
    "No SMS attempts match these filters.": "没有符合筛选条件的短信发送记录。",
    "Pages": "分页",
    "← Newer": "← 较新",
    "Older →": "较早 →",
    "Page %(page)s of %(pages)s": "第 %(page)s / %(pages)s 页",
    # -- send outcomes (the log's category column, errors.Category values)
    "sent": "已发送",
    "skipped": "已跳过",
    "signature": "签名",
    "template": "模板",
    "authentication": "身份验证",
    "permission": "权限",
    "rate_limit": "频率限制",
    "balance": "余额与账号",
    "invalid_number": "号码无效",
    "network": "网络",
    "unknown": "未知",
}

#: Messages with a run-time part, as (regex over the English text, Chinese template). Named
#: groups fill the template; a group whose text is itself in :data:`ZH` is translated too.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (
            r"Too many codes were requested\. Try again in (?P<seconds>\d+) seconds\.",
            "请求验证码过于频繁，请 %(seconds)s 秒后再试。",
        ),
        (r"Saved: (?P<keys>.+)\.", "已保存：%(keys)s。"),
        (r"Fill in these parameters first: (?P<keys>.+)\.", "请先填写这些参数：%(keys)s。"),
        (r"Use at least (?P<count>\d+) characters\.", "密码至少需要 %(count)s 个字符。"),
        (r"Use at most (?P<count>\d+) characters\.", "密码最多 %(count)s 个字符。"),
        (r"must be at most (?P<count>\d+) characters", "最多 %(count)s 个字符"),
        (r"must be at least (?P<number>-?\d+)", "不能小于 %(number)s"),
        (r"must be at most (?P<number>-?\d+)", "不能大于 %(number)s"),
        (
            r"(?P<item>.+) is not a country calling code \(86 is mainland China\)",
            "%(item)s 不是国家/地区电话代码（中国大陆为 86）",
        ),
        (
            r"cannot be switched on while these are empty: (?P<keys>.+)",
            "以下参数为空时不能开启：%(keys)s",
        ),
        (
            r"Field cannot be longer than (?P<count>\d+) characters?\.",
            "不能超过 %(count)s 个字符。",
        ),
        (
            r"Field must be at least (?P<count>\d+) characters? long\.",
            "至少需要 %(count)s 个字符。",
        ),
        (
            r"Field must be between (?P<low>\d+) and (?P<high>\d+) characters long\.",
            "长度须在 %(low)s 到 %(high)s 个字符之间。",
        ),
        # Checklist lines: "<parameter label> (<parameter key>)".
        (r"(?P<label>[^()]+) \((?P<key>[a-z_]+(?:\.[a-z_]+)+)\)", "%(label)s（%(key)s）"),
    )
)


def _normalise(tag: str) -> str:
    """Fold a language tag into one of :data:`LANGUAGES`: every Chinese variant is "zh"."""
    return "zh" if tag.strip().lower().startswith("zh") else "en"


def current_language() -> str:
    """The page language: ``ALISMS_LANGUAGE`` if the app forces one, else the browser's choice.

    Outside a request (CLI, background jobs) without a forced language it is English.
    """
    if has_app_context():
        forced = current_app.config.get("ALISMS_LANGUAGE")
        if forced:
            return _normalise(str(forced))
    if has_request_context():
        best = request.accept_languages.best_match(_ACCEPTED)
        if best:
            return _normalise(best)
    return "en"


def _from_patterns(text: str) -> str | None:
    """Chinese for a message with a run-time part, or None when no pattern knows it."""
    for pattern, template in PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            parts = {name: ZH.get(value, value) for name, value in match.groupdict().items()}
            return template % parts
    return None


def translate(text: object, language: str, **kwargs: Any) -> str:
    """``text`` in ``language``, then ``%``-formatted with ``kwargs`` when any are given.

    Anything unknown stays English; a translation whose placeholders do not fit ``kwargs``
    falls back to the English text, so a catalogue slip never breaks a page.
    """
    source = "" if text is None else str(text)
    result = source
    if language == "zh":
        result = ZH.get(source) or _from_patterns(source) or source
    if not kwargs:
        return result
    for candidate in (result, source):
        try:
            return candidate % kwargs
        except (KeyError, ValueError, TypeError):
            continue
    return source


def gettext(text: str, **kwargs: Any) -> str:
    """Translate ``text`` for the current request (see :func:`current_language`)."""
    return translate(text, current_language(), **kwargs)


def _template_globals() -> dict[str, Any]:
    """``_`` and ``alisms_lang`` for the templates, with the language worked out once."""
    language = current_language()

    def _(text: object, **kwargs: Any) -> str:
        return translate(text, language, **kwargs)

    return {"_": _, "alisms_lang": language}


def _vary_on_language(response: Response) -> Response:
    """Pages chosen from Accept-Language must not be served from a cache to another browser."""
    if not current_app.config.get("ALISMS_LANGUAGE"):
        response.vary.add("Accept-Language")
    return response


def install(bp: Blueprint) -> None:
    """Give the blueprint's templates ``_`` and ``alisms_lang``.

    Registered for the blueprint's own requests only, so that a host's own ``_`` (Flask-Babel,
    for instance) keeps working in the host's templates.
    """
    bp.context_processor(_template_globals)
    bp.after_request(_vary_on_language)


def lazy_gettext(text: str, **kwargs: Any) -> str:
    """Placeholder until the Babel catalogues land: the text as is."""
    return text % kwargs if kwargs else text
