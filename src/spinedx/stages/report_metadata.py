"""Report-metadata stage: the resolved configuration (YAML) and the software versions
(CSV) that the HTML report shows beside the tables and figures."""

from __future__ import annotations

import yaml

from spinedx.io import write_csv, write_text
from spinedx.records import software_versions


def main_stage(config, config_out, versions_out) -> None:
    write_text(yaml.safe_dump(dict(config), sort_keys=False), config_out)
    write_csv(software_versions(), versions_out)
