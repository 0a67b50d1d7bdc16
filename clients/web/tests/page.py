"""Driving the Streamlit app the way a user does, through Selenium: type into a widget, pick an
option, click a button, wait for what the page shows, read the lensd tables back."""
import json
import pathlib
import time
from typing import Callable, Dict, List

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 90
# The app's first page, which Streamlit serves at "/" whatever its url_path.
DEFAULT_VIEW = "trajectory"


class Page:
    def __init__(self, driver, base_url: str, screenshots: pathlib.Path):
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots

    def open(self, path: str) -> None:
        """Opens a view by its url_path; the first view (the default page) lives at "/"."""
        self.driver.get(f"{self.base_url}/{'' if path == DEFAULT_VIEW else path}")
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebar]"),
                  f"the page /{path}")

    def wait(self, condition: Callable, what: str, timeout: float = TIMEOUT):
        """condition()'s first truthy value (stale elements retried); fails naming `what` and
        saving a screenshot."""
        def check(_):
            try:
                return condition()
            except (StaleElementReferenceException, json.JSONDecodeError, IndexError):
                return None
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(check)
        except WebDriverException as error:
            self.screenshot(f"failed-{what.replace(' ', '_').replace('/', '_')[:60]}")
            raise AssertionError(f"timed out waiting for {what}; page text:\n"
                                 f"{self.text()[:3000]}") from error

    def find(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def screenshot(self, name: str) -> pathlib.Path:
        path = self.screenshots / f"{name}.png"
        # The whole page: as tall as its content.
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, "
            "...Array.from(document.querySelectorAll('section, [data-testid=stMain], "
            "[data-testid=stAppScrollToBottomContainer]')).map(e => e.scrollHeight))")
        self.driver.set_window_size(1600, min(max(int(height) + 200, 1300), 6000))
        time.sleep(0.3)
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1600, 1300)
        return path

    # -- widgets, found by their Streamlit key ----------------------------------------------------

    def type_text(self, key: str, text: str, submit: bool = True) -> None:
        """Replaces a text input's or text area's value; with `submit`, applies it (Enter, or
        Ctrl+Enter in a text area)."""
        element = self.wait(lambda: (self.find(f".st-key-{key} textarea")
                                     or self.find(f".st-key-{key} input"))[0], f"widget {key}")
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.DELETE)
        element.send_keys(text)
        if submit:
            if element.tag_name == "textarea":
                element.send_keys(Keys.CONTROL, Keys.ENTER)
            else:
                element.send_keys(Keys.ENTER)

    def choose(self, key: str, option: str) -> None:
        """Picks `option` in a selectbox (or adds it in a multiselect)."""
        box = self.wait(lambda: self.find(f".st-key-{key} input")[0], f"select {key}")
        box.click()
        choice = self.wait(
            lambda: next((o for o in self.find("[role=option]") if o.text.strip() == option),
                         None), f"option {option!r} of {key}")
        choice.click()
        self.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)

    def click(self, key: str) -> None:
        button = self.wait(lambda: self.find(f".st-key-{key} button")[0], f"button {key}")
        button.click()

    # -- what the page shows ----------------------------------------------------------------------

    def heatmaps(self) -> List[Dict]:
        """Every heat map on the page: lens, statistic, header tokens, and cells by
        (layer label, position) -> (token, value, hover)."""
        out = []
        for element in self.find(".lensd-heatmap"):
            cells = {}
            for cell in element.find_elements(By.CSS_SELECTOR, "td.lensd-cell"):
                key = (cell.get_attribute("data-layer"), int(cell.get_attribute("data-position")))
                cells[key] = (json.loads(cell.get_attribute("data-token")),
                              float(cell.get_attribute("data-value")),
                              cell.get_attribute("title"))
            out.append({"lens": element.get_attribute("data-lens"),
                        "statistic": element.get_attribute("data-statistic"),
                        "rows": len(element.find_elements(By.CSS_SELECTOR, "tbody tr")),
                        "header": [h.text for h in
                                   element.find_elements(By.CSS_SELECTOR, "thead th")][1:],
                        "cells": cells})
        return out

    def table(self, name: str) -> List[Dict]:
        """A lensd table's rows as dicts of exact values (data-value JSON)."""
        tables = self.find(f"table.lensd-table[data-table='{name}']")
        if not tables:
            return []
        return [{td.get_attribute("data-column"): json.loads(td.get_attribute("data-value"))
                 for td in row.find_elements(By.CSS_SELECTOR, "td")}
                for row in tables[0].find_elements(By.CSS_SELECTOR, "tr.lensd-row")]

    def inner_text(self, css: str) -> str:
        found = self.find(css)
        return found[0].text if found else ""
