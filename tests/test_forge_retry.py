import email.utils

import pytest

from bot.forge.retry import RetryPolicy, asked_wait, rate_limit_wait, retry_delay

POLICY = RetryPolicy(max_attempts=4, backoff=1.0, max_wait=60.0)


def test_backoff_doubles_for_server_errors_and_transport_failures_then_stops():
    assert [retry_delay(POLICY, n, status=502) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]
    assert [retry_delay(POLICY, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]


def test_backoff_never_exceeds_the_cap():
    policy = RetryPolicy(max_attempts=10, backoff=10.0, max_wait=25.0)
    assert retry_delay(policy, 5, status=500) == 25.0


@pytest.mark.parametrize("status", [200, 201, 204, 302, 400, 401, 404, 410, 422])
def test_final_answers_are_not_retried(status):
    assert retry_delay(POLICY, 1, status=status) is None


def test_a_403_without_rate_limit_headers_is_final():
    assert retry_delay(POLICY, 1, status=403, headers={"x-ratelimit-remaining": "4000"}) is None


def test_retry_after_is_honoured_for_403_and_429_whatever_the_header_case():
    assert retry_delay(POLICY, 1, status=403, headers={"Retry-After": "7"}) == 7.0
    assert retry_delay(POLICY, 1, status=429, headers={"retry-after": "3"}) == 3.0
    assert retry_delay(POLICY, 1, status=503, headers={"Retry-After": "5"}) == 5.0


def test_primary_rate_limit_waits_until_the_reset_time():
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000"}
    assert retry_delay(POLICY, 1, status=403, headers=headers, now=990.0) == 11.0
    # a reset an hour away is returned as is: the caller compares it with max_wait and gives up
    assert rate_limit_wait(403, {**headers, "x-ratelimit-reset": "4600"}, now=1000.0) == 3601.0


def test_429_without_hints_backs_off_and_unparsable_retry_after_is_ignored():
    assert retry_delay(POLICY, 2, status=429) == 2.0
    assert retry_delay(POLICY, 1, status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 1.0
    assert retry_delay(POLICY, 1, status=403, headers={"Retry-After": "soon"}) is None


def test_no_retry_after_the_last_attempt_even_when_rate_limited():
    assert retry_delay(POLICY, 4, status=429, headers={"Retry-After": "1"}) is None


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_one_reader_of_both_forges_rate_limit_headers():
    assert asked_wait({"Retry-After": "7"}, None) == 7.0
    at = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:10 GMT").timestamp()
    assert asked_wait({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=at - 10) == 10.0
    assert asked_wait({"RateLimit-Reset": "1010"}, now=1000.0) == 10.0  # GitLab
    assert (
        asked_wait({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, now=1000.0) == 11.0
    )  # GitHub
    assert asked_wait({"x-ratelimit-remaining": "12", "x-ratelimit-reset": "1010"}, now=1000.0) is None
    assert asked_wait({"Retry-After": "soon"}, now=1000.0) is None
