"""The HTML leaderboard page in a real headless browser (Debian's Chromium via Selenium)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from medbench.leaderboard.build import build_tables
from medbench.leaderboard.html import page_order, pareto_metric, render_html
from medbench.leaderboard.table import LeaderboardTable

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STORE_V1 = Path(__file__).parent / "fixtures" / "store_v1"  # real runs (its README)
NAN = float("nan")


def _row(method, dataset, metrics, *, macs, params, rank=1, data="proxy", model=None,
         infer_model_ms=NAN):
    """A frame row; metrics: {name: (mean, std, ci_low, ci_high, best, tied, p)}."""
    row = {"rank": rank, "method": method, "section": "4.2", "model": model or method,
           "dataset": dataset, "data": data, "reported": "AUC 0.95", "runs": 15,
           "params": params, "macs": macs, "train_s": 812.0, "infer_ms": 1.7,
           "tuning": "untuned", "infer_model_ms": infer_model_ms}
    for m, values in metrics.items():
        row |= dict(zip([f"{m}_{s}" for s in ("mean", "std", "ci_low", "ci_high", "best", "tied",
                                               "p")], values, strict=True))
    return row


def _tables() -> list[LeaderboardTable]:
    lung = pd.DataFrame([
        _row("resnet18", "pneumoniamnist", {"auc": (0.956, 0.004, 0.951, 0.961, True, False, NAN),
                                            "acc": (0.871, 0.012, 0.862, 0.880, False, True, 0.4)},
             macs=1.82e9, params=11.2e6),
        _row("resnet50", "pneumoniamnist", {"auc": (0.949, 0.006, 0.942, 0.956, False, True, 0.21),
                                            "acc": (0.884, 0.010, 0.875, 0.893, True, False, NAN)},
             macs=4.11e9, params=23.5e6, rank=2),
        _row("mobilenet_v3_small", "pneumoniamnist",
             {"auc": (0.921, 0.009, 0.911, 0.931, False, False, 0.003),
              "acc": (0.842, 0.015, 0.830, 0.854, False, False, 0.01)},
             macs=5.9e7, params=1.5e6, rank=3),
        _row("densenet121", "chestmnist", {"auc": (0.773, 0.002, 0.771, 0.775, True, False, NAN),
                                           "acc": (0.947, 0.001, 0.946, 0.948, True, False, NAN)},
             macs=NAN, params=7.0e6, data="paper's own"),
    ])
    skin = pd.DataFrame([
        _row("inception_v3", "dermamnist", {"acc": (0.768, 0.011, 0.759, 0.777, True, False, NAN)},
             macs=5.7e9, params=23.8e6, infer_model_ms=0.42),
        _row("resnet18", "dermamnist", {"acc": (0.754, 0.008, 0.748, 0.760, False, True, 0.09)},
             macs=1.82e9, params=11.2e6, rank=2),
        _row("vgg16", "dermamnist", {"acc": (0.741, 0.013, 0.731, 0.751, False, False, 0.02)},
             macs=15.5e9, params=138e6, rank=3),
        _row("resnet18", "bloodmnist", {"acc": (0.958, 0.003, 0.955, 0.961, True, False, NAN)},
             macs=1.82e9, params=11.2e6),
    ])
    return [LeaderboardTable("table05_lung", "Table 5: lung <classification>", ["auc", "acc"],
                             lung, notes=["AUC & accuracy on the official test split."]),
            LeaderboardTable("table07_skin", "Table 7: skin & blood", ["acc"], skin)]


def _expected_optimal(frame: pd.DataFrame, m: str) -> list[bool]:
    """Pareto-optimal flags of the rows with MACs, by brute force, in frame order."""
    pts = [(r.dataset, r.macs, r[f"{m}_mean"]) for _, r in frame.iterrows()
           if not math.isnan(r.macs)]
    return [not any(d2 == d and x2 <= x and y2 >= y and (x2, y2) != (x, y) for d2, x2, y2 in pts)
            for d, x, y in pts]


@contextmanager
def _browser(root: Path):
    """Headless Chromium (skipped where it is not installed, failed when it is required)."""
    missing = [f"{p} (apt-get install {p.name.replace('chromedriver', 'chromium-driver')})"
               for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        reason = "the browser tests need " + ", ".join(missing)
        if os.environ.get("MEDBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={root / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, html: str, path: Path) -> None:
    path.write_text(html, encoding="utf-8")
    driver.get(path.as_uri())


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The rendered page open in headless Chromium: (driver, html, path)."""
    root = tmp_path_factory.mktemp("leaderboard")
    html = render_html(_tables(), "Leaderboard <draft>", "Tables 5 & 7, three seeds")
    with _browser(root) as driver:
        _open(driver, html, root / "leaderboard.html")
        yield driver, html, root / "leaderboard.html"


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _column(driver, key: str, header: str) -> tuple:
    """The header element of the column whose first header line is `header`, and its index."""
    heads = driver.find_elements("css selector", f"#{key} thead th")
    index = next(i for i, h in enumerate(heads) if h.text.split("\n")[0] == header)
    return heads[index], index


def _cells(driver, key: str, index: int, attr: str | None = "data-value") -> list:
    cells = driver.find_elements("css selector", f"#{key} tbody tr td:nth-child({index + 1})")
    return [float(c.get_attribute(attr)) if attr else c.text for c in cells]


def test_loads_offline_without_errors(page):
    driver, html, _ = page
    assert driver.title == "Leaderboard <draft>"
    assert driver.find_element("css selector", "h1").text == "Leaderboard <draft>"
    assert _severe(driver) == []
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_tables_render_rows_and_cells(page):
    driver, _, path = page
    driver.get(path.as_uri())  # rows in frame order, whatever sorting ran before
    for table in _tables():
        rows = driver.find_elements("css selector", f"table.leaderboard#{table.key} tbody tr")
        assert len(rows) == len(table.frame)
        for m in table.metrics:
            assert len(driver.find_elements("css selector", f"#{table.key} td.best")) >= 1
            _, index = _column(driver, table.key, m)
            assert _cells(driver, table.key, index) == list(table.frame[f"{m}_mean"])
    texts = [r.text for r in driver.find_elements("css selector", "#table05_lung tbody tr")]
    assert "0.956 ± 0.004 [0.951, 0.961]" in texts[0] and "11.2 M" in texts[0]
    assert "1.82 G" in texts[0] and "13.5 min" in texts[0] and "1.7 ms" in texts[0]
    assert "59 M" in texts[2] and "paper's own" in texts[3] and "–" in texts[3]
    tied = driver.find_element("css selector", "#table05_lung tbody tr:nth-child(2) td.tied .mark")
    assert tied.text == "≈" and "(p=0.21)" in tied.get_attribute("title")
    assert driver.find_element("css selector", "h2").text == "Table 5: lung <classification>"


@pytest.mark.parametrize("key,metric", [("table05_lung", "auc"), ("table07_skin", "acc")])
def test_metric_header_sorts_numerically(page, key, metric):
    driver, _, _ = page
    head, index = _column(driver, key, metric)
    values = _cells(driver, key, index)
    head.click()
    assert _cells(driver, key, index) == sorted(values)
    head.click()
    assert _cells(driver, key, index) == sorted(values, reverse=True)
    _, macs = _column(driver, key, "MACs")
    head_macs = driver.find_elements("css selector", f"#{key} thead th")[macs]
    head_macs.click()
    sorted_macs = _cells(driver, key, macs)
    finite = [x for x in sorted_macs if not math.isnan(x)]
    assert finite == sorted(finite) and sorted_macs[: len(finite)] == finite  # NaN last
    assert _severe(driver) == []


def test_method_header_sorts_alphabetically(page):
    driver, _, _ = page
    head, index = _column(driver, "table05_lung", "method")
    head.click()
    methods = _cells(driver, "table05_lung", index, attr=None)
    assert methods == sorted(methods) and len(methods) == 4
    head.click()
    assert _cells(driver, "table05_lung", index, attr=None) == sorted(methods, reverse=True)


def test_bar_chart_has_a_bar_and_whisker_per_row(page):
    driver, _, _ = page
    for table in _tables():
        svg = driver.find_element("css selector", f"section:has(#{table.key}) svg.bars")
        assert len(svg.find_elements("css selector", "rect.bar")) == len(table.frame)
        whiskers = svg.find_elements("css selector", "g.whisker")
        assert len(whiskers) == len(table.frame)
        assert all(len(w.find_elements("css selector", "line")) == 3 for w in whiskers)
        assert len(svg.find_elements("css selector", "g.axis text")) >= 3
        assert all(float(r.get_attribute("width")) > 0
                   for r in svg.find_elements("css selector", "rect.bar"))


def test_pareto_plot_marks_the_optimal_points(page):
    driver, _, _ = page
    for table in _tables():
        svg = driver.find_element("css selector", f"section:has(#{table.key}) svg.pareto")
        points = svg.find_elements("css selector", "circle.point")
        metric = pareto_metric(table.metrics)  # accuracy against MACs
        assert metric == "acc"
        expected = _expected_optimal(table.frame, metric)
        assert len(points) == len(expected)
        assert ["pareto-optimal" in p.get_attribute("class") for p in points] == expected
        titles = [p.find_element("css selector", "title").get_attribute("textContent")
                  for p in points]
        assert all(metric in t and "MACs" in t for t in titles)
        assert len(svg.find_elements("css selector", "path.front")) >= 1
    lung = driver.find_element("css selector", "section:has(#table05_lung) svg.pareto")
    assert "log scale" in lung.text  # 59 M .. 4.11 G spans > 10x
    assert "log scale" not in driver.find_element("css selector",
                                                  "section:has(#table07_skin) svg.pareto").text


def test_screenshot(page, tmp_path):
    driver, _, _ = page
    shot = tmp_path / "leaderboard.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_one_run_ci_is_na_and_model_only_timing_is_shown(page):
    driver, _, path = page
    driver.get(path.as_uri())
    single = _tables()[1].frame.iloc[:1].assign(runs=1)  # inception_v3: acc 0.768
    html = render_html([LeaderboardTable("one", "one run", ["acc"], single)], "t", "c")
    assert "[n/a]" in html and "0.768 ± 0.011 <span" in html and "[0.759, 0.777]" not in html
    _, infer = _column(driver, "table07_skin", "inference")
    cells = driver.find_elements("css selector",
                                 f"#table07_skin tbody td:nth-child({infer + 1})")
    assert cells[0].text == "420 µs" and float(cells[0].get_attribute("data-value")) == 0.42
    assert "forward passes alone" in cells[0].get_attribute("title")
    assert cells[1].text == "1.7 ms incl. loading"  # no model-only figure: the old one, labelled
    assert "data loading included" in cells[1].get_attribute("title")


def test_bars_start_at_a_stated_zero_and_auc_marks_chance(page):
    driver, _, _ = page
    for table in _tables():
        svg = driver.find_element("css selector", f"section:has(#{table.key}) svg.bars")
        ticks = svg.find_elements("css selector", "g.axis line")[:-1]  # the last: the axis line
        labels = [float(t.text) for t in svg.find_elements("css selector", "g.axis text")[:-1]]
        assert labels[0] == 0 and labels == sorted(labels) and labels[-1] >= 0.958
        zero = float(ticks[0].get_attribute("x1"))
        assert {float(r.get_attribute("x")) for r in svg.find_elements(
            "css selector", "rect.bar")} == {zero}  # every bar's length is its value
        assert "axis from 0" in svg.text
        figure = driver.find_element("css selector", f"section:has(#{table.key}) figure")
        assert "axis from 0" in figure.find_element("css selector", "figcaption").text
        chance = svg.find_elements("css selector", "path.chance")
        assert len(chance) == ("auc" == table.metrics[0])  # AUC's coin toss: 0.5
    assert "dashed: chance 0.5" in driver.find_element(
        "css selector", "section:has(#table05_lung) svg.bars").text


@pytest.fixture(scope="module")
def store_v1(tmp_path_factory) -> str:
    """The real store of tests/fixtures/store_v1 (LeNet-5, gao2014 and ovalle2016 on
    BreastMNIST, a one-run CSV-manifest row), artifact URIs pointed at the copy."""
    folder = tmp_path_factory.mktemp("store_v1")
    shutil.copytree(STORE_V1 / "mlartifacts", folder / "mlartifacts")
    written = Path(json.loads((STORE_V1 / "expected.json").read_text())["results_dir"])
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.executescript((STORE_V1 / "mlflow.sql").read_text(encoding="utf-8"))
        for table, column in (("runs", "artifact_uri"), ("experiments", "artifact_location")):
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                       (written.as_uri(), folder.as_uri()))
    return f"sqlite:///{folder}/mlflow.db"


def test_a_personal_store_opens_with_its_own_runs_and_folds_empty_tables(store_v1, tmp_path):
    tables = build_tables(store_v1)
    full, empty = page_order(tables)
    assert full[0].key == "all_methods" and tables[-1].key == "all_methods"  # last when built
    assert [t.key for t in full[1:]] == [t.key for t in tables[:-1] if len(t.frame)]
    assert empty and all(t.frame.empty for t in empty) and len(full) + len(empty) == len(tables)
    with _browser(tmp_path) as driver:
        _open(driver, render_html(tables, "mine", "store_v1"), tmp_path / "page.html")
        assert _severe(driver) == []
        headings = [h.text for h in driver.find_elements("css selector", "section > h2")]
        links = driver.find_elements("css selector", "nav a")  # each to its section
        assert [a.get_attribute("hash") for a in links] == [
            *(f"#s-{t.key}" for t in full), "#empty-tables"]
        assert all(driver.find_elements("css selector", a.get_attribute("hash")) for a in links)
        assert headings == [*(t.title for t in full), f"Tables without rows ({len(empty)})"]
        assert driver.find_element("css selector", "table.leaderboard").get_attribute(
            "id") == "all_methods"  # the first table on the page: the user's own runs
        folded = driver.find_elements("css selector", "#empty-tables details.empty")
        assert [d.get_attribute("id") for d in folded] == [t.key for t in empty]
        for line, table in zip(folded, empty, strict=True):
            assert line.get_attribute("open") is None and line.size["height"] < 40  # one line
            assert line.text.startswith(f"{table.title}: no rows yet")
        assert not driver.find_elements("css selector", "#empty-tables table")
        for table in full:  # long notes (every surveyed entry not run yet) are folded too
            notes = driver.find_elements("css selector", f"section:has([id^={table.key}]) > "
                                         "details:not(.empty)")
            assert len(notes) == (len(table.notes) > 5), table.key
            assert not notes or notes[0].text == f"{len(table.notes)} notes"
            idle = [part.family for part, frame in table.family_parts() if frame.empty]
            line = driver.find_elements("css selector", f"section:has([id^={table.key}]) > "
                                        "p.empty")  # the families without rows: one line
            assert [e.text for e in line] == [f"{', '.join(idle)}: no rows yet."] * bool(idle)
        texts = [r.text for r in driver.find_elements("css selector", "#all_methods tbody tr")]
        frame = full[0].frame
        for text, runs, lo, hi in zip(texts, frame.runs, frame.auc_ci_low, frame.auc_ci_high,
                                      strict=True):
            assert ("[n/a]" in text) == (runs == 1)
            assert (f"[{lo:.3f}, {hi:.3f}]" in text) == (runs > 1)
            assert "incl. loading" in text  # runs tracked before model-only timing
        assert sum(frame.runs == 1) == 2  # ovalle2016, and LeNet-5 on the CSV manifest
        svg = driver.find_element("css selector", "section:has(#all_methods) svg.bars")
        assert len(svg.find_elements("css selector", "g.whisker")) == sum(frame.runs > 1)
        assert float(svg.find_elements("css selector", "g.axis text")[0].text) == 0


def test_an_empty_store_is_one_line_per_table(results_dir):
    tables = build_tables(f"sqlite:///{results_dir}/mlflow.db")
    html = render_html(tables, "empty", "c")
    assert page_order(tables) == ([], tables)
    assert html.count('<details class="empty"') == len(tables) and "<table" not in html
    assert f">{len(tables)} table(s) without rows</a>" in html
