"""Demo-cohort stage: the built-in synthetic study (:mod:`spinedx.demo.spine`) written
where the config's ``data`` section expects a real one."""

from __future__ import annotations

import logging

from spinedx.config import ConfigError
from spinedx.demo.plan import demo_settings
from spinedx.demo.spine import generate_demo_cohort

log = logging.getLogger(__name__)


def main_stage(config, images_dir, cases_csv) -> None:
    settings = demo_settings(config)
    generate = generate_demo_cohort
    if settings.get("study") == "vertebral_ct":  # CT volumes (spinedx.demo.vertebral_ct)
        from spinedx.demo.vertebral_ct import generate_demo_cohort as generate
    try:
        cases = generate(images_dir, cases_csv, settings)
    except ValueError as error:  # settings the schema allows but the generator cannot honour
        raise ConfigError(f"demo_cohort: {error}") from error
    log.info("demo cohort: %d patients written to %s", len(cases), images_dir)
