"""Demo-cohort stage: the built-in synthetic study (:mod:`spinedx.demo.spine`, or the
study config ``demo_cohort.study`` names) written where the config's ``data`` section
expects a real one."""

from __future__ import annotations

import logging

from spinedx.config import ConfigError
from spinedx.demo.plan import demo_settings, renderer

log = logging.getLogger(__name__)


def main_stage(config, images_dir, cases_csv) -> None:
    settings = demo_settings(config)
    module = renderer(settings)
    if module is None:
        from spinedx.demo.spine import generate_demo_cohort
    else:
        generate_demo_cohort = module.generate_demo_cohort
    try:
        cases = generate_demo_cohort(images_dir, cases_csv, settings)
    except ValueError as error:  # settings the schema allows but the generator cannot honour
        raise ConfigError(f"demo_cohort: {error}") from error
    log.info("demo cohort: %d patients written to %s", len(cases), images_dir)
