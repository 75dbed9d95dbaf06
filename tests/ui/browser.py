"""Drives Verdict's web UI in headless Chromium (Playwright with the system's chromium, no
browser download) and prints what a person sees, as JSON, for tests/ui.rs to assert on.

    python3 tests/ui/browser.py URL SCREENSHOT_DIR PHASE

PHASE is `start` (matrix, playground, the diff page before any reload) or `reload` (the diff
page after the test changed the policy directory). Screenshots go to SCREENSHOT_DIR.
"""
import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("VERDICT_CHROMIUM", "/usr/bin/chromium")


def texts(page, selector):
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def cell(page, kind, cls, action):
    """What a person reads in one cell of the matrix."""
    td = page.locator(
        "section.kind", has=page.locator("h2", has_text=kind)
    ).locator(f'tr[data-class="{cls}"] td[data-action="{action}"]')
    return {
        "access": td.locator(".access").inner_text(),
        "condition": td.locator(".condition").all_inner_texts(),
        "rules": td.locator(".rules a").all_inner_texts(),
        "links": [a.get_attribute("href") for a in td.locator(".rules a").all()],
        "notes": td.locator(".note").all_inner_texts(),
    }


def matrix(page, url, shots, name):
    seen = {}
    loads = []
    for _ in range(3):
        started = time.monotonic()
        page.goto(url + "/matrix", wait_until="load")
        loads.append(round((time.monotonic() - started) * 1000, 1))
    seen["load_ms"] = loads
    seen["version"] = page.inner_text("#policy-version")
    seen["kinds"] = texts(page, "section.kind h2")
    seen["classes"] = page.locator("section.kind").first.locator("tbody tr").count()
    seen["cells"] = page.locator("td.cell").count()
    seen["physician_reads_patient"] = cell(page, "Patient", "role:physician/scope:user", "read")
    seen["nurse_reads_invoice"] = cell(page, "Invoice", "role:nurse/scope:user", "read")
    seen["system_reads_invoice"] = cell(page, "Invoice", "role:system/scope:system", "read")
    seen["unscoped_physician_reads_patient"] = cell(
        page, "Patient", "role:physician/scope:none", "read"
    )
    page.screenshot(path=os.path.join(shots, name))
    page.screenshot(path=os.path.join(shots, "full-" + name), full_page=True)
    # The Patient table (docs/img/matrix.png is this screenshot of the bundled clinic).
    page.goto(url + "/matrix#kind-" + str(seen["kinds"].index("Patient")))
    page.screenshot(path=os.path.join(shots, "patient-" + name))
    # The class filter hides the rows that do not match.
    page.fill("#class-filter", "physician")
    seen["rows_shown_for_physician"] = page.locator(
        "section.kind >> nth=0 >> tbody tr:visible"
    ).count()
    # A rule's link opens its line.
    page.goto(url + seen["physician_reads_patient"]["links"][0])
    seen["rule_target"] = page.inner_text(":target")
    return seen


def playground(page, url, shots):
    seen = {}
    page.goto(url + "/playground")
    seen["version"] = page.inner_text("#policy-version")
    # A physician of practice 7 reads a patient of practice 7, built with the form.
    page.fill("input[name=roles]", "physician")
    page.fill("input[name=scopes]", "user/*.cruds")
    page.fill("textarea[name=principal_attr]", '{"practice_id": "7"}')
    page.select_option("select[name=kind]", "Patient")
    page.select_option("select[name=action]", "read")
    page.fill("input[name=resource_id]", "<img src=x onerror=alert(1)>")
    page.fill(
        "textarea[name=resource_attr]",
        '{"practice_id": "7", "patient_id": "123", "state": "CA", "celebrity": false}',
    )
    page.select_option("#dialect", "postgres")
    page.click("#decide")
    page.wait_for_selector("#decisions tr")
    # (Locators, not wait_for_function: the page's Content-Security-Policy forbids eval.)
    page.locator("#plan-kind:not(:empty)").wait_for()
    row = texts(page, "#decisions tr:not(.trace) td")
    seen["trace"] = texts(page, "#decisions tr.trace li")
    seen["trace_links"] = [
        a.get_attribute("href") for a in page.locator("#decisions tr.trace li a").all()
    ]
    seen["decision"] = row
    seen["rule_link"] = page.get_attribute("#decisions tr:not(.trace) td a", "href")
    seen["decided_version"] = page.inner_text("#decided-version")
    seen["plan"] = {
        "kind": page.inner_text("#plan-kind"),
        "filter": page.inner_text("#plan-filter"),
        "sql": page.inner_text("#plan-sql"),
        "params": page.inner_text("#plan-params"),
    }
    seen["images_in_decisions"] = page.locator("#decisions img").count()
    page.screenshot(path=os.path.join(shots, "playground.png"), full_page=True)

    # The deciding rule's link opens its file at its line.
    page.click("#decisions tr:not(.trace) td a")
    page.wait_for_load_state()
    seen["rule_target"] = page.inner_text(":target")
    seen["rule_page_title"] = page.inner_text("h1")

    # A request that is not JSON, and one the server refuses: each says why, nothing breaks.
    page.goto(url + "/playground")
    page.fill("#request", "{not json")
    page.click("#decide")
    page.wait_for_selector("#error:not([hidden])")
    seen["error_not_json"] = page.inner_text("#error")
    page.fill("#request", '{"principal": {"id": "u", "rank": 3}, "resources": []}')
    page.click("#decide")
    page.locator("#error", has_text="INVALID_ARGUMENT").wait_for()
    seen["error_refused"] = page.inner_text("#error")
    page.screenshot(path=os.path.join(shots, "playground-error.png"), full_page=True)
    return seen


def diff(page, url, shots, name):
    page.goto(url + "/diff")
    seen = {
        "version": page.inner_text("#policy-version"),
        "text": page.inner_text("main"),
        "files": texts(page, ".file-diff h3"),
        "summary": texts(page, "#change-summary"),
        "changes": [
            {
                "cells": [t.strip() for t in row.locator("td").all_inner_texts()],
                "classes": row.locator(".classes li").all_inner_texts(),
                "gained": row.locator(".counterexample.gained").all_inner_texts(),
            }
            for row in page.locator("tr.change").all()
        ],
        "added": page.locator(".diff tr.add pre").all_inner_texts(),
        "removed": page.locator(".diff tr.del pre").all_inner_texts(),
    }
    page.screenshot(path=os.path.join(shots, name), full_page=True)
    return seen


def main():
    url, shots, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(shots, exist_ok=True)
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
        if phase == "start":
            seen["matrix"] = matrix(page, url, shots, "matrix.png")
            seen["playground"] = playground(page, url, shots)
            seen["diff"] = diff(page, url, shots, "diff-none.png")
        elif phase == "reload":
            seen["diff"] = diff(page, url, shots, "diff.png")
            seen["matrix"] = matrix(page, url, shots, "matrix-after.png")
        else:
            raise SystemExit("unknown phase " + phase)
        seen["script_errors"] = errors
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
