"""Chat templates: turning a list of messages into the prompt text a model was trained on.

A model directory's ``tokenizer_config.json`` may carry a ``chat_template`` (a Jinja string);
it is rendered here the way transformers' ``apply_chat_template`` renders it: a sandboxed Jinja2
environment with ``trim_blocks`` / ``lstrip_blocks`` and the loop-controls extension, the globals
``raise_exception`` and ``strftime_now``, a ``tojson`` filter that does not escape HTML, and the
variables ``messages``, ``add_generation_prompt`` and the special tokens (``bos_token``,
``eos_token``, ...). For a model without a template, :data:`ALPACA` and :data:`VICUNA` give the
two common instruction formats, and any callable ``fn(messages, add_generation_prompt=...,
**special_tokens) -> str`` is accepted as a template too.
"""
import datetime
import functools
import json

__all__ = ["ALPACA", "VICUNA", "TEMPLATES", "render", "check_messages"]

# Alpaca (Stanford): an optional system preamble, then "### Instruction:" / "### Response:" blocks.
ALPACA = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }}\n\n"
    "{% set rest = messages[1:] %}"
    "{% else %}"
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "{% set rest = messages %}"
    "{% endif %}"
    "{% for message in rest %}"
    "{% if message['role'] == 'user' %}"
    "### Instruction:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}"
    "### Response:\n{{ message['content'] }}{{ eos_token }}\n\n"
    "{% else %}"
    "{{ raise_exception('the Alpaca format has roles system (first), user and assistant, got ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)

# Vicuna v1.1: "<system> USER: ... ASSISTANT: ...</s>USER: ..."
VICUNA = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }} "
    "{% set rest = messages[1:] %}"
    "{% else %}"
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. "
    "{% set rest = messages %}"
    "{% endif %}"
    "{% for message in rest %}"
    "{% if message['role'] == 'user' %}"
    "USER: {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}"
    "ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% else %}"
    "{{ raise_exception('the Vicuna format has roles system (first), user and assistant, got ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

TEMPLATES = {"alpaca": ALPACA, "vicuna": VICUNA}


def check_messages(messages, what="messages"):
    """ValueError / TypeError unless messages is a non-empty list of dicts, each with a string
    ``role`` and a ``content``."""
    if isinstance(messages, dict) or not isinstance(messages, (list, tuple)):
        raise TypeError(f"{what} must be a list of {{'role': ..., 'content': ...}} dicts, "
                        f"got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{what} is empty: give at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"{what}[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}")
        if "role" not in message:
            raise ValueError(f"{what}[{i}] has no 'role' (expected 'system', 'user' or 'assistant'): {message!r}")
        if not isinstance(message["role"], str):
            raise ValueError(f"{what}[{i}]'s role must be a string such as 'user', got {message['role']!r}")
        if "content" not in message:
            raise ValueError(f"{what}[{i}] has no 'content' (expected a dict with 'role' and 'content'): "
                             f"{message!r}")


@functools.lru_cache(maxsize=32)
def _compile(source):
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # a declared dependency; say so plainly if it is missing
        raise ImportError("chat templates need jinja2 >= 3: pip install jinja2") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters; templates expect plain JSON.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"the chat template is not valid Jinja: {e}") from None


# Appended to the last message's text to find where it ends once rendered (continue_final_message).
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _cut_at_continue_tag(text, final):
    """The rendered text up to where the last message's own text ends, as transformers cuts it."""
    tag = _CONTINUE_TAG.strip()
    if final.strip() not in text or tag not in text:
        raise ValueError("continue_final_message=True: the chat template does not write the last message as given, "
                         "so there is no place to continue it from")
    at = text.rindex(tag)
    # a template that strips the message also strips the space after the tag
    return text[:at] if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()


def render(template, messages, add_generation_prompt=False, tools=None, documents=None,
           continue_final_message=False, **variables):
    """The text of ``messages`` in ``template``: a Jinja string, a name in :data:`TEMPLATES`
    (``"alpaca"``, ``"vicuna"``) or a callable. ``variables`` (``bos_token``, ``eos_token``, ...)
    are visible to the template, and so are ``tools`` and ``documents`` (lists of dicts, JSON
    schemas for tools) to a Jinja template. ``continue_final_message=True`` ends the text where
    the last message's content ends (no end-of-turn), as transformers does."""
    check_messages(messages)
    if isinstance(template, str) and template in TEMPLATES:
        template = TEMPLATES[template]
    messages = [dict(m) for m in messages]
    for name, value in (("tools", tools), ("documents", documents)):
        if value is not None and (not isinstance(value, (list, tuple)) or
                                  not all(isinstance(v, dict) for v in value)):
            raise TypeError(f"{name} must be a list of dicts (JSON schemas for tools), got {value!r:.200}")
    final = None
    if continue_final_message:
        final = messages[-1]["content"]
        if not isinstance(final, str):
            raise ValueError("continue_final_message=True needs the last message's content to be a str, "
                             f"got {type(final).__name__}")
        messages[-1]["content"] = final + _CONTINUE_TAG
    if callable(template):
        text = template(messages, add_generation_prompt=add_generation_prompt, **variables)
        if not isinstance(text, str):
            raise TypeError(f"a callable chat template must return a str, got {type(text).__name__}")
    elif not isinstance(template, str):
        raise TypeError(f"the chat template (template= / chat_template=) must be a Jinja string, a template name "
                        f"({', '.join(repr(n) for n in TEMPLATES)}) or a callable, got {type(template).__name__}")
    elif "{{" not in template and "{%" not in template:  # no Jinja at all: a misspelt name, not a template
        raise ValueError(f"the chat template (template= / chat_template=) must be a Jinja string, a template name "
                         f"({', '.join(repr(n) for n in TEMPLATES)}) or a callable, got {template!r}")
    else:
        import jinja2
        try:
            text = _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                             tools=None if tools is None else list(tools),
                                             documents=None if documents is None else list(documents), **variables)
        except jinja2.exceptions.TemplateError as e:
            raise ValueError(f"the chat template refused the messages: {e}") from None
    return text if final is None else _cut_at_continue_tag(text, final)
