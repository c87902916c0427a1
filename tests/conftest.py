import os

from hypothesis import HealthCheck, settings

# "ci" keeps the suite a few minutes on 2 cores; "long" is the documented longer run
# (HYPOTHESIS_PROFILE=long pytest tests).
settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("debug", max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    import cyrnn
    return f"cyrnn {cyrnn.__version__} from {os.path.dirname(cyrnn.__file__)}"
