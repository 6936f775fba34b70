"""The real Prefect UI (v1, served by `prefect server start`) as the approval client, in headless Chromium.

`answer_approval` does what an approver does: opens the paused run's page, clicks *Resume*, fills the
"Resume Flow Run" form that the UI builds from the RunInput's JSON schema, and submits it.

What the v1 UI renders, per JSON-schema type (Prefect 3.8.8, found by reading the dialog's DOM):

- every field is a ``.schema-form-property`` whose ``.schema-form-property__label`` is the field's *title*
  (non-required fields get `` (Optional)`` appended); the ``<label for=...>`` ids do not match the
  controls, so ``get_by_label`` finds nothing;
- ``string`` -> a ``<textarea>`` (``p-textarea``);
- ``boolean`` -> ``label[role=switch]`` with ``aria-checked``;
- ``enum`` (a ``Literal[...]``) -> the design system's ``PSelect``: a ``button.p-select-button__control`` whose
  options open in a pop-over ``[role=listbox].p-select-options`` of ``[role=option]`` items labelled with the
  enum values. A mouse click on the button does not open it in headless Chromium (the pop-over's
  auto-close sees the same click); the keyboard does: focus + ArrowDown, then click the option.
  Browsers without hover (touch emulation) get a native ``<select>`` instead: handled too.

Chromium is Debian's (``/usr/bin/chromium``, installed by scripts/bootstrap.sh); ``playwright install`` is
never used (it downloads browsers).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DIALOG_TITLE = "Resume Flow Run"
POLL_S = 0.1


class PrefectUIError(AssertionError):
    """The UI did not show what an approver needs (a button, a field, an option), or refused the answer."""


def answer_approval(ui_url: str, flow_run_id: str, values: dict[str, Any], screenshot: Path | None = None,
                    timeout_s: float = 60) -> None:
    """Answer the paused (or suspended) flow run's input form through the Prefect UI, as a person would.

    ``values`` maps each field to fill to its value; a key is the field's title as shown in the form
    (``"Décision / Decision"``) or its name in the RunInput (``"decision"``). Strings go into the field's
    textarea/input, booleans set its switch, an enum value is picked in its select. Fields not given keep
    their defaults. ``screenshot``: where to save a PNG of the filled dialog before submitting.
    Returns once the dialog is gone and the server no longer has the run paused; raises
    :class:`PrefectUIError` saying what was not found or what the UI answered.
    """
    from playwright.sync_api import sync_playwright

    ui_url = ui_url.rstrip("/")
    deadline = time.monotonic() + timeout_s
    api_url = _api_url(ui_url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            failed = _record_failed_responses(page)
            page.set_default_timeout(max(1.0, timeout_s) * 1000)
            page.goto(f"{ui_url}/runs/flow-run/{flow_run_id}", wait_until="domcontentloaded")

            resume = page.get_by_role("button", name="Resume", exact=True)
            _wait(lambda: resume.count() > 0 and resume.first.is_visible(), deadline,
                  lambda: f"no Resume button on the run page {page.url} (run state: "
                          f"{_run_state(api_url, flow_run_id)}; buttons: {_texts(page.get_by_role('button'))})")
            fields = _schema_fields(api_url, flow_run_id)
            resume.first.click()

            dialog = page.locator(".p-modal__card").filter(has_text=DIALOG_TITLE)
            _wait(lambda: dialog.count() > 0 and dialog.first.is_visible(), deadline,
                  lambda: f"the {DIALOG_TITLE!r} dialog did not open after clicking Resume")
            dialog = dialog.first
            properties = dialog.locator(".schema-form-property")
            _wait(lambda: properties.count() > 0, deadline,
                  lambda: f"the {DIALOG_TITLE!r} dialog shows no form fields (is the run waiting for input?)")

            for key, value in values.items():
                title = _title_for(key, fields)
                _fill(page, dialog, title, value, deadline)

            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                dialog.screenshot(path=str(screenshot))

            _submit(dialog, failed, deadline,
                    lambda: f"the {DIALOG_TITLE!r} dialog is still open after Submit; it shows: "
                            f"{_messages(page) or 'no error message'}; failed API calls: {failed or 'none'}")
            _wait(lambda: _run_state(api_url, flow_run_id) != "PAUSED", deadline,
                  lambda: f"the run is still PAUSED after the form was submitted; the UI shows: "
                          f"{_messages(page) or 'no message'}; failed API calls: {failed or 'none'}")
        finally:
            browser.close()


# -- the form -----------------------------------------------------------------------------------------

SUBMIT_ATTEMPTS = 3


def _submit(dialog, failed: list[str], deadline: float, what: Callable[[], str]) -> None:
    """Click Submit until the dialog closes; click again (as an approver would) after a 5xx or no answer to the resume.

    Why again: on the embedded SQLite server a write can meet another one and get 503 "database is locked"
    (Prefect's clients retry it; the UI only shows "Oops. Something went wrong." and keeps the form open).
    """
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        seen = len(failed)
        dialog.get_by_role("button", name="Submit", exact=True).click()

        def settled() -> bool:
            return dialog.count() == 0 or not dialog.is_visible() or _resume_failed(failed[seen:])

        _wait(settled, deadline, what)
        if not _resume_failed(failed[seen:]):
            return
        if attempt == SUBMIT_ATTEMPTS:
            raise PrefectUIError(what())


def _resume_failed(answers: list[str]) -> bool:
    return any(re.search(r"/resume -> (5\d\d|failed)", answer) for answer in answers)



def _fill(page, dialog, title: str, value: Any, deadline: float) -> None:
    prop = dialog.locator(".schema-form-property").filter(
        has=page.locator(".schema-form-property__label").filter(has_text=_label_pattern(title)))
    if prop.count() == 0:
        raise PrefectUIError(f"field {title!r} not found in the {DIALOG_TITLE!r} dialog; "
                             f"fields present: {_texts(dialog.locator('.schema-form-property__label'))}")
    prop = prop.first
    switch = prop.locator("[role=switch]")
    native_select = prop.locator("select")
    select_button = prop.locator("button.p-select-button__control")
    text = prop.locator("textarea, input:not([type=checkbox]):not([type=hidden])")

    if switch.count():
        if not isinstance(value, bool):
            raise PrefectUIError(f"field {title!r} is a switch: give True or False, not {value!r}")
        if (switch.first.get_attribute("aria-checked") == "true") != value:
            switch.first.click()
        _wait(lambda: (switch.first.get_attribute("aria-checked") == "true") == value, deadline,
              lambda: f"the switch of {title!r} did not turn {'on' if value else 'off'}")
    elif native_select.count():
        options = _texts(native_select.first.locator("option"))
        if str(value) not in options:
            raise PrefectUIError(f"field {title!r} has no option {value!r}; options: {options}")
        native_select.first.select_option(label=str(value))
    elif select_button.count():
        _pick_option(page, title, select_button.first, str(value), deadline)
    elif text.count():
        text.first.fill(str(value))
        _wait(lambda: text.first.input_value() == str(value), deadline,
              lambda: f"field {title!r} does not hold the text typed into it")
    else:
        raise PrefectUIError(f"field {title!r} has no control this helper knows (textarea, input, switch, select); "
                             f"its HTML: {prop.inner_html()[:500]}")


def _pick_option(page, title: str, button, value: str, deadline: float) -> None:
    listbox = page.locator("[role=listbox].p-select-options")
    button.focus()
    button.press("ArrowDown")  # opens the pop-over (a mouse click does not, see the module docstring)
    _wait(lambda: listbox.count() > 0 and listbox.first.is_visible(), deadline,
          lambda: f"the options of {title!r} did not open")
    options = listbox.first.locator("[role=option]")
    option = options.filter(has_text=re.compile(rf"^\s*{re.escape(value)}\s*$"))
    if option.count() == 0:
        raise PrefectUIError(f"field {title!r} has no option {value!r}; options: {_texts(options)}")
    option.first.click()
    shown = button.locator(".p-select-button__value")
    _wait(lambda: shown.inner_text().strip() == value, deadline,
          lambda: f"field {title!r} shows {shown.inner_text().strip()!r} after picking {value!r}")


def _label_pattern(title: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(title)}(\s*\(Optional\))?\s*$")


def _title_for(key: str, fields: dict[str, str]) -> str:
    """The title shown in the form for ``key`` (a field name or already a title)."""
    if key in fields:
        return fields[key]
    if not fields or key in fields.values():
        return key
    raise PrefectUIError(f"{key!r} is neither a field name nor a field title of the run's input form; "
                         f"fields: {', '.join(f'{n} ({t!r})' for n, t in fields.items())}")


# -- the API, read-only: which form the UI builds, and whether the run left Paused --------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (the test server, on loopback)
        return json.load(resp)


def _api_url(ui_url: str) -> str:
    """The API the UI talks to: what the server tells the UI at /ui-settings (else ``{ui_url}/api``)."""
    try:
        api = _get_json(f"{ui_url}/ui-settings").get("api_url")
    except (OSError, ValueError):
        api = None
    return (api or f"{ui_url}/api").rstrip("/")


def _run_state(api_url: str, flow_run_id: str) -> str:
    try:
        state = _get_json(f"{api_url}/flow_runs/{flow_run_id}").get("state") or {}
    except (OSError, ValueError) as exc:
        return f"unknown ({exc})"
    return state.get("type") or "none"


def _schema_fields(api_url: str, flow_run_id: str) -> dict[str, str]:
    """Field name -> title of the paused run's input schema (the one the UI builds its form from); {} if unknown."""
    try:
        run = _get_json(f"{api_url}/flow_runs/{flow_run_id}")
        key = ((run.get("state") or {}).get("state_details") or {}).get("run_input_keyset", {}).get("schema")
        if not key:
            return {}
        schema = _get_json(f"{api_url}/flow_runs/{flow_run_id}/input/{key}")
    except (OSError, ValueError, AttributeError):
        return {}
    if isinstance(schema, str):
        schema = json.loads(schema)
    return {name: prop.get("title", name) for name, prop in (schema.get("properties") or {}).items()}


# -- waiting and reporting --------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], deadline: float, what: Callable[[], str]) -> None:
    while True:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 (an element re-rendered under us: look again)
            pass
        if time.monotonic() >= deadline:
            raise PrefectUIError(what())
        time.sleep(POLL_S)


def _record_failed_responses(page) -> list[str]:
    """Every API answer >= 400 the page receives, as "METHOD url -> status: body", and every request that got no
    answer, as "METHOD url -> failed: reason" (what the UI's toast hides)."""
    failed: list[str] = []

    def on_response(response) -> None:
        if response.status < 400:
            return
        try:
            body = response.text()[:300]
        except Exception:  # noqa: BLE001 (the body may be gone already)
            body = "?"
        failed.append(f"{response.request.method} {response.url} -> {response.status}: {body}")

    def on_request_failed(request) -> None:  # no answer at all (the UI's toast says the same for both)
        failed.append(f"{request.method} {request.url} -> failed: {request.failure}")

    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    return failed


def _texts(locator) -> list[str]:
    return [t.strip() for t in locator.all_inner_texts() if t.strip()]


def _messages(page) -> list[str]:
    """Error/toast texts the UI shows (validation messages in the form, toasts)."""
    return _texts(page.locator(".p-toast__message, .p-message, .p-label__message"))
