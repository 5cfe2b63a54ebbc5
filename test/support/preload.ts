/**
 * Loaded before every test file (bunfig.toml). Rate limits are off for every server a test starts
 * as a process (they inherit this environment): the suite sends far more than 60 requests a minute
 * per key. Tests of rate limits set the limits they test explicitly; in-process servers get the same
 * default from test/support/server.ts.
 */
process.env.RATE_LIMIT_PER_MINUTE = "0";
process.env.RATE_LIMIT_HEAVY_PER_MINUTE = "0";
