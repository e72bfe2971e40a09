"""Grid carbon intensity (gCO2e/kWh), PUE, and the gCO2e of an energy figure.

Where the intensity comes from, in order (`resolve_intensity`):
1. a fixed value you configure (g/kWh);
2. Electricity Maps' live value, when an API key is set (`ELECTRICITYMAPS_API_KEY`) and a country
   or zone is given; on any failure it falls back to 3 and says why in `note`;
3. codecarbon's packaged yearly energy mix by country (`data/private_infra/global_energy_mix.json`),
   by ISO-3166 code, alpha-3 ("FRA") or alpha-2 ("FR"); read from the installed package without
   importing codecarbon (which pulls pandas);
4. the world average, 475 g/kWh (codecarbon's figure), when no country is set.

gCO2e = energy (kWh) x PUE x intensity (g/kWh); PUE (data-centre overhead, >= 1) defaults to 1.0.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from wattlab.errors import ConfigError, MeterError
from wattlab.meters.estimate import codecarbon_data_file

WORLD_AVERAGE_G_PER_KWH = 475.0  # codecarbon's world average (IEA 2019), used when no country is set
J_PER_KWH = 3.6e6
ELECTRICITYMAPS_URL = "https://api.electricitymaps.com/v3/carbon-intensity/latest"
API_KEY_ENV = "ELECTRICITYMAPS_API_KEY"
API_URL_ENV = "ELECTRICITYMAPS_API_URL"  # override the endpoint (a proxy, or a test server)
_CODES_FIX = (
    "use an ISO-3166 country code, alpha-2 or alpha-3 (FR or FRA, US or USA, DE or DEU); "
    "see https://en.wikipedia.org/wiki/ISO_3166-1, or set a fixed intensity in g/kWh"
)


@dataclass(frozen=True, slots=True)
class CarbonIntensity:
    """Grid carbon intensity in gCO2e per kWh, and where it came from.

    source:  "configured", "electricitymaps live", "codecarbon energy mix <year>", "world average".
    country: ISO-3166 alpha-3 code, when known.
    note:    why a fallback was used, when one was.
    """

    g_per_kwh: float
    source: str
    country: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "g_per_kwh": self.g_per_kwh,
            "source": self.source,
            "country": self.country,
            "note": self.note,
        }


# --- countries ------------------------------------------------------------------------------------
@functools.cache
def _energy_mix() -> dict[str, dict[str, Any]]:
    path = codecarbon_data_file("private_infra/global_energy_mix.json")
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {str(k).upper(): v for k, v in data.items() if isinstance(v, dict)}


def _country_codes() -> list[tuple[str, str]]:
    """(alpha-2, alpha-3) pairs from pycountry (a codecarbon dependency), imported only when needed."""
    try:
        import pycountry
    except ImportError:
        return []
    return [(c.alpha_2, c.alpha_3) for c in pycountry.countries]


def to_alpha3(code: str) -> str:
    """ISO-3166 alpha-3 code for an alpha-2 or alpha-3 code (any case). ConfigError if unknown."""
    c = code.strip().upper()
    if len(c) == 3 and c.isalpha() and (c in _energy_mix() or any(a3 == c for _, a3 in _country_codes())):
        return c
    if len(c) == 2 and c.isalpha():
        for a2, a3 in _country_codes():
            if a2 == c:
                return a3
    raise ConfigError(f"unknown country code {code!r}", fix=_CODES_FIX)


def to_alpha2(code: str) -> str | None:
    c = to_alpha3(code)
    return next((a2 for a2, a3 in _country_codes() if a3 == c), None)


def country_intensity(code: str) -> CarbonIntensity:
    """Yearly grid intensity of a country from codecarbon's energy-mix table."""
    alpha3 = to_alpha3(code)
    mix = _energy_mix()
    if not mix:
        raise ConfigError(
            "codecarbon's energy-mix table is not installed, so country intensities are unknown",
            fix="pip install codecarbon, or set a fixed intensity in g/kWh",
        )
    row = mix.get(alpha3)
    if row is None or row.get("carbon_intensity") is None:
        raise ConfigError(
            f"codecarbon's energy-mix table has no intensity for {alpha3}",
            fix="set a fixed intensity in g/kWh for this country",
        )
    year = row.get("year")
    name = row.get("country_name", alpha3)
    source = f"codecarbon energy mix {year} ({name})" if year else f"codecarbon energy mix ({name})"
    return CarbonIntensity(float(row["carbon_intensity"]), source, alpha3)


# --- live ------------------------------------------------------------------------------------------
def live_intensity(
    zone: str, api_key: str, *, url: str | None = None, timeout_s: float = 3.0
) -> CarbonIntensity:
    """Latest intensity of an Electricity Maps zone ("FR", "DE", "US-CAL-CISO"). MeterError on failure."""
    endpoint = url or os.environ.get(API_URL_ENV) or ELECTRICITYMAPS_URL
    request = urllib.request.Request(
        f"{endpoint}?{urllib.parse.urlencode({'zone': zone})}",
        headers={"auth-token": api_key, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = json.loads(response.read().decode("utf-8"))
        value = float(payload["carbonIntensity"])
    except urllib.error.HTTPError as exc:
        raise MeterError(f"Electricity Maps answered HTTP {exc.code} for zone {zone}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MeterError(f"Electricity Maps gave no intensity for zone {zone}: {exc}") from exc
    return CarbonIntensity(value, f"electricitymaps live ({payload.get('datetime', 'latest')})", None)


# --- the one entry point ---------------------------------------------------------------------------
def resolve_intensity(
    *,
    country: str | None = None,
    fixed_g_per_kwh: float | None = None,
    zone: str | None = None,
    api_key: str | None = None,
    api_url: str | None = None,
    timeout_s: float = 3.0,
) -> CarbonIntensity:
    """The intensity to use, following the module docstring's order. Bad input raises ConfigError.

    fixed_g_per_kwh: a configured intensity, used as is. api_key defaults to $ELECTRICITYMAPS_API_KEY;
    zone (an Electricity Maps zone) defaults to the country's alpha-2 code.
    """
    if fixed_g_per_kwh is not None:
        if not fixed_g_per_kwh >= 0:
            raise ConfigError(
                f"carbon intensity must be >= 0 g/kWh, got {fixed_g_per_kwh}", fix="e.g. 56 for France"
            )
        return CarbonIntensity(float(fixed_g_per_kwh), "configured", to_alpha3(country) if country else None)
    alpha3 = to_alpha3(country) if country else None
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    note = None
    if key:
        live_zone = zone or (to_alpha2(country) if country else None)
        if live_zone:
            try:
                live = live_intensity(live_zone, key, url=api_url, timeout_s=timeout_s)
                return CarbonIntensity(live.g_per_kwh, f"{live.source}, zone {live_zone}", alpha3)
            except MeterError as exc:
                note = f"{exc.message}; using the yearly table instead"
        else:
            note = "an Electricity Maps key is set but no country or zone: set one for live intensity"
    if alpha3:
        found = country_intensity(alpha3)
        return CarbonIntensity(found.g_per_kwh, found.source, alpha3, note)
    return CarbonIntensity(WORLD_AVERAGE_G_PER_KWH, "world average (codecarbon)", None, note)


def check_pue(pue: float) -> float:
    """PUE as a float; ConfigError unless >= 1 (1.0 = no data-centre overhead)."""
    if not pue >= 1.0:
        raise ConfigError(
            f"PUE must be >= 1.0, got {pue}", fix="1.0 for no overhead; data centres run ~1.1-1.6"
        )
    return float(pue)


def gco2e(energy_j: float, intensity: CarbonIntensity | float, pue: float = 1.0) -> float:
    """Grams of CO2e for energy_j joules: kWh x PUE x g/kWh."""
    g_per_kwh = intensity.g_per_kwh if isinstance(intensity, CarbonIntensity) else float(intensity)
    return energy_j / J_PER_KWH * check_pue(pue) * g_per_kwh
