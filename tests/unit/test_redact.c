/*
 * test_redact.c - unit tests of secret redaction: a table of secrets of
 * every type inside surrounding text (exact expected output), a table of
 * look-alikes and placeholders that must stay byte-identical, several
 * secrets in one text, stats, binary input, idempotence (also on random
 * mixes of the tables) and a large input that must stay untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/redact.h"
#include "ds/error.h"
#include "testutil.h"

static char *redact_str(const char *in, ds_redact_stats *st)
{
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(ds_redact(in, strlen(in), &out, &outlen, st), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), outlen);
    return out;
}

static void check_idempotent(const char *in, size_t len);

struct pos { const char *in, *want; ds_redact_type type; };

#define GHP "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
#define OAI "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
#define ANT "sk-ant-api03-Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE-aBcD"
#define JWT "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
#define PEM_BODY "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n" \
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"

static const struct pos positives[] = {
    { "key AKIAIOSFODNN7EXAMPLE here", "key [REDACTED:aws-key] here", DS_REDACT_AWS_KEY },
    { "id=ASIAY34FZKBOKMUTVV7A,", "id=[REDACTED:aws-key],", DS_REDACT_AWS_KEY },
    { "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nnext",
      "aws_secret_access_key = [REDACTED:aws-secret]\nnext", DS_REDACT_AWS_SECRET },
    { "export AWS_SECRET_ACCESS_KEY=\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"",
      "export AWS_SECRET_ACCESS_KEY=\"[REDACTED:aws-secret]\"", DS_REDACT_AWS_SECRET },
    { "{\"SecretAccessKey\": \"9drTJvcXLB89EXAMPLELB8923FB892xMFI\"}",
      "{\"SecretAccessKey\": \"[REDACTED:aws-secret]\"}", DS_REDACT_AWS_SECRET },
    { "use " GHP " now", "use [REDACTED:github-token] now", DS_REDACT_GITHUB_TOKEN },
    { "gho_16C7e42F292c6912E7710c838347Ae178B4a.", "[REDACTED:github-token].", DS_REDACT_GITHUB_TOKEN },
    { "(ghs_abcdefghijklmnopqrstuvwxyz0123456789)", "([REDACTED:github-token])", DS_REDACT_GITHUB_TOKEN },
    { "t: github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
      "t: [REDACTED:github-token]", DS_REDACT_GITHUB_TOKEN },
    { "GITLAB glpat-xYz12AbC34dEf56GhI78j done", "GITLAB [REDACTED:gitlab-token] done", DS_REDACT_GITLAB_TOKEN },
    { "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ok",
      "slack [REDACTED:slack-token] ok", DS_REDACT_SLACK_TOKEN },
    { "xoxp-1234567890-abcdefghij", "[REDACTED:slack-token]", DS_REDACT_SLACK_TOKEN },
    { "POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now",
      "POST https://[REDACTED:slack-token] now", DS_REDACT_SLACK_TOKEN },
    { "key is " OAI ".", "key is [REDACTED:openai-key].", DS_REDACT_OPENAI_KEY },
    { "sk-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e", "[REDACTED:openai-key]", DS_REDACT_OPENAI_KEY },
    { "ANTHROPIC: " ANT " end", "ANTHROPIC: [REDACTED:anthropic-key] end", DS_REDACT_ANTHROPIC_KEY },
    { "a\n-----BEGIN RSA PRIVATE KEY-----\n" PEM_BODY "-----END RSA PRIVATE KEY-----\nb",
      "a\n[REDACTED:private-key]\nb", DS_REDACT_PRIVATE_KEY },
    { "-----BEGIN OPENSSH PRIVATE KEY-----\n" PEM_BODY "-----END OPENSSH PRIVATE KEY-----",
      "[REDACTED:private-key]", DS_REDACT_PRIVATE_KEY },
    /* a key inside a JSON string (service account file shown by a tool) */
    { "\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\\n-----END PRIVATE KEY-----\\n\",",
      "\"private_key\": \"[REDACTED:private-key]\\n\",", DS_REDACT_PRIVATE_KEY },
    /* cut short by a bounded tool output: redacted to the end of the body */
    { "$ cat id_rsa\n-----BEGIN EC PRIVATE KEY-----\n" PEM_BODY "\n[output truncated]",
      "$ cat id_rsa\n[REDACTED:private-key]\n\n[output truncated]", DS_REDACT_PRIVATE_KEY },
    { "token " JWT " end", "token [REDACTED:jwt] end", DS_REDACT_JWT },
    { "Authorization: Bearer 8f2a9c71d4e6b3a0f5c8e1d7b9a2c4e6",
      "Authorization: Bearer [REDACTED:bearer]", DS_REDACT_BEARER },
    { "curl -H 'authorization: bearer abc123DEF456ghi789JKL' x",
      "curl -H 'authorization: bearer [REDACTED:bearer]' x", DS_REDACT_BEARER },
    { "Authorization: Bearer " JWT, "Authorization: Bearer [REDACTED:jwt]", DS_REDACT_JWT },
    { "DB_PASSWORD=hunter2\n", "DB_PASSWORD=[REDACTED:secret]\n", DS_REDACT_SECRET },
    { "export API_TOKEN=\"abc\"", "export API_TOKEN=\"[REDACTED:secret]\"", DS_REDACT_SECRET },
    { "db:\n  password: xyz\n", "db:\n  password: [REDACTED:secret]\n", DS_REDACT_SECRET },
    { "  - client_secret: 'q1w2e3r4'", "  - client_secret: '[REDACTED:secret]'", DS_REDACT_SECRET },
    { "{\"password\":\"p@ss w0rd\",\"user\":\"bob\"}",
      "{\"password\":\"[REDACTED:secret]\",\"user\":\"bob\"}", DS_REDACT_SECRET },
    { "cfg = {'apiKey': 'zzz111'}", "cfg = {'apiKey': '[REDACTED:secret]'}", DS_REDACT_SECRET },
    { "spring.datasource.password=s3cr3t", "spring.datasource.password=[REDACTED:secret]", DS_REDACT_SECRET },
    { "mysql --password=topsecret db", "mysql --password=[REDACTED:secret] db", DS_REDACT_SECRET },
    { "tool --api-key 0123abcd", "tool --api-key [REDACTED:secret]", DS_REDACT_SECRET },
    { "GET /cb?code=1&access_token=AbC123xyz&x=1", "GET /cb?code=1&access_token=[REDACTED:secret]&x=1", DS_REDACT_SECRET },
    { "SECRET_KEY = 'django-insecure-abc'", "SECRET_KEY = '[REDACTED:secret]'", DS_REDACT_SECRET },
    { "PRIVATE_KEY: abcdef", "PRIVATE_KEY: [REDACTED:secret]", DS_REDACT_SECRET },
    { "my_credentials := \"u:p\"", "my_credentials := \"[REDACTED:secret]\"", DS_REDACT_SECRET },
    { "'db_password' => 'letmein',", "'db_password' => '[REDACTED:secret]',", DS_REDACT_SECRET },
    { "x {\\\"password\\\":\\\"hunter2\\\"} y", "x {\\\"password\\\":\\\"[REDACTED:secret]\\\"} y", DS_REDACT_SECRET },
    { "DB_PASS=a\\nHOST=h", "DB_PASS=[REDACTED:secret]\\nHOST=h", DS_REDACT_SECRET },
    { "DATABASE_URL=postgres://app:Sup3rS3cret@db:5432/app",
      "DATABASE_URL=postgres://app:[REDACTED:secret]@db:5432/app", DS_REDACT_SECRET },
    { "redis://:hunter2@localhost", "redis://:[REDACTED:secret]@localhost", DS_REDACT_SECRET },
    /* a specific type wins over the generic assignment */
    { "GITHUB_TOKEN=" GHP, "GITHUB_TOKEN=[REDACTED:github-token]", DS_REDACT_GITHUB_TOKEN },
    { "OPENAI_API_KEY=\"" OAI "\"", "OPENAI_API_KEY=\"[REDACTED:openai-key]\"", DS_REDACT_OPENAI_KEY },
    { "https://x-access-token:" GHP "@github.com/o/r", "https://x-access-token:[REDACTED:github-token]@github.com/o/r",
      DS_REDACT_GITHUB_TOKEN },
};

static const char *const negatives[] = {
    "task-ant-farm", "skeleton key", "sk-1", "sk-short", "desk-ant-api03-Zx9yW8vU7tS6rQ5pO4nM3lK2",
    "AKIA", "AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPLEX", "xAKIAIOSFODNN7EXAMPLE",
    "ghp_short", "my_ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "sk-learn-compatible-estimators-and-pipelines",
    "Please enter your password to continue.",
    "the password: it lives in the vault",
    "Forgot password?  Reset the token here.",
    "token = None", "password = null", "TOKEN=", "API_TOKEN=\"\"", "password: ''",
    "API_TOKEN=${API_TOKEN}", "GITHUB_TOKEN=$GITHUB_TOKEN", "token: <your-token>",
    "password: \"<password>\"", "api_key = os.environ[\"API_KEY\"]", "token = get_token()",
    "password = self.password", "token=process.env.TOKEN", "SECRET_KEY=YOUR_SECRET_KEY",
    "password: ********", "password: xxxxxx", "password: {{ vault_password }}",
    "token: \"{{ secrets.GITHUB_TOKEN }}\"", "DB_PASSWORD_FILE=/run/secrets/db",
    "max_tokens=4096", "token_type: Bearer", "tokenizer = AutoTokenizer()",
    "num_tokens: 12", "if password == \"\":", "if token != expected:",
    "password:\n  from_env: X", "PWD=/home/u/proj", "secret_name=db",
    "Bearer token", "Authorization: Bearer ${TOKEN}", "Authorization: Bearer <token>",
    "Bearer YOUR_TOKEN_HERE", "The bearer of this letter", "Bearer Authentication is common",
    "eyJhbGciOi", "eyJhbGciOiJIUzI1NiJ9.short", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    "if (strstr(s, \"-----BEGIN RSA PRIVATE KEY-----\")) return 1;",
    "https://example.com:8080/path@x", "ssh://git@github.com/o/r", "postgres://u:${PW}@h/db",
    "[REDACTED:secret]", "DB_PASSWORD=[REDACTED:secret]", "password: !vault |",
    "xoxb-", "xoxb-123", "hooks.slack.com/services/", "glpat-short",
};

static void test_positives(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof positives / sizeof positives[0]; k++) {
        ds_redact_stats st;
        char *out = redact_str(positives[k].in, &st);
        if (strcmp(out, positives[k].want) != 0)
            fail_msg("case %zu:\n  in   %s\n  got  %s\n  want %s", k, positives[k].in, out,
                     positives[k].want);
        assert_int_equal(st.total, 1);
        assert_int_equal(st.count[positives[k].type], 1);
        free(out);
    }
}

static void test_negatives(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof negatives / sizeof negatives[0]; k++) {
        ds_redact_stats st;
        char *out = redact_str(negatives[k], &st);
        if (strcmp(out, negatives[k]) != 0)
            fail_msg("negative %zu changed:\n  in  %s\n  got %s", k, negatives[k], out);
        assert_int_equal(st.total, 0);
        free(out);
    }
}

static void test_multiple(void **state)
{
    (void)state;
    const char *in =
        "Set up:\n"
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
        "gh uses " GHP " and openai " OAI ";\n"
        "anthropic=" ANT "\n"
        "password: hunter2\n"
        "max_tokens=4096 stays, so does the skeleton.\n";
    const char *want =
        "Set up:\n"
        "export AWS_ACCESS_KEY_ID=[REDACTED:aws-key]\n"
        "export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret]\n"
        "gh uses [REDACTED:github-token] and openai [REDACTED:openai-key];\n"
        "anthropic=[REDACTED:anthropic-key]\n"
        "password: [REDACTED:secret]\n"
        "max_tokens=4096 stays, so does the skeleton.\n";
    ds_redact_stats st;
    char *out = redact_str(in, &st);
    assert_string_equal(out, want);
    assert_int_equal(st.total, 6);
    assert_int_equal(st.count[DS_REDACT_AWS_KEY], 1);
    assert_int_equal(st.count[DS_REDACT_AWS_SECRET], 1);
    assert_int_equal(st.count[DS_REDACT_GITHUB_TOKEN], 1);
    assert_int_equal(st.count[DS_REDACT_OPENAI_KEY], 1);
    assert_int_equal(st.count[DS_REDACT_ANTHROPIC_KEY], 1);
    assert_int_equal(st.count[DS_REDACT_SECRET], 1);
    free(out);
}

/* How matchers combine: a token as URL user name, a known token that does
 * not fill an assignment's value, a multi-line key in a quoted value. */
static void test_interactions(void **state)
{
    (void)state;
    static const struct { const char *in, *want; size_t total; } cases[] = {
        { "git clone https://glpat-xYz12AbC34dEf56GhI78j:pw123@gitlab.com/a/b",
          "git clone https://[REDACTED:gitlab-token]:[REDACTED:secret]@gitlab.com/a/b", 2 },
        { "TOKEN=" GHP ":extra\n", "TOKEN=[REDACTED:github-token][REDACTED:secret]\n", 2 },
        { "PRIVATE_KEY=\"  -----BEGIN PRIVATE KEY-----\n" PEM_BODY "-----END PRIVATE KEY-----\"\nX=1",
          "PRIVATE_KEY=\"  [REDACTED:private-key]\"\nX=1", 1 },
        { "Authorization: Bearer " ANT, "Authorization: Bearer [REDACTED:anthropic-key]", 1 },
        { "a=" OAI " b=" OAI, "a=[REDACTED:openai-key] b=[REDACTED:openai-key]", 2 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ds_redact_stats st;
        char *out = redact_str(cases[k].in, &st);
        if (strcmp(out, cases[k].want) != 0)
            fail_msg("case %zu:\n  got  %s\n  want %s", k, out, cases[k].want);
        assert_int_equal(st.total, cases[k].total);
        free(out);
        check_idempotent(cases[k].in, strlen(cases[k].in));
    }
}

static void test_binary_and_args(void **state)
{
    (void)state;
    /* embedded NUL and invalid UTF-8 pass through byte for byte */
    const char in[] = "a\0b\xff\xfe " GHP "\0z";
    size_t len = sizeof in - 1;
    char *out;
    size_t outlen;
    assert_int_equal(ds_redact(in, len, &out, &outlen, NULL), 0);
    const char want[] = "a\0b\xff\xfe [REDACTED:github-token]\0z";
    assert_int_equal(outlen, sizeof want - 1);
    assert_memory_equal(out, want, outlen);
    assert_int_equal(out[outlen], '\0');
    free(out);

    assert_int_equal(ds_redact(NULL, 0, &out, &outlen, NULL), 0);
    assert_string_equal(out, "");
    assert_int_equal(outlen, 0);
    free(out);
    assert_int_equal(ds_redact(NULL, 3, &out, &outlen, NULL), DS_ERR_INVALID);
    assert_null(out);
    assert_int_equal(ds_redact("x", 1, NULL, &outlen, NULL), DS_ERR_INVALID);
    assert_int_equal(ds_redact("x", 1, &out, NULL, NULL), DS_ERR_INVALID);

    assert_string_equal(ds_redact_type_name(DS_REDACT_ANTHROPIC_KEY), "anthropic-key");
    assert_string_equal(ds_redact_type_name(DS_REDACT_NTYPES), "unknown");
}

static void check_idempotent(const char *in, size_t len)
{
    char *once, *twice;
    size_t l1, l2;
    ds_redact_stats st;
    assert_int_equal(ds_redact(in, len, &once, &l1, NULL), 0);
    assert_int_equal(ds_redact(once, l1, &twice, &l2, &st), 0);
    if (l1 != l2 || memcmp(once, twice, l1) != 0)
        fail_msg("not idempotent:\n  once  %s\n  twice %s", once, twice);
    assert_int_equal(st.total, 0);
    free(once);
    free(twice);
}

static void test_idempotent(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof positives / sizeof positives[0]; k++)
        check_idempotent(positives[k].in, strlen(positives[k].in));
    for (size_t k = 0; k < sizeof negatives / sizeof negatives[0]; k++)
        check_idempotent(negatives[k], strlen(negatives[k]));

    /* random concatenations of table entries and separators */
    static const char *const seps[] = { "", " ", "\n", "=", ": ", "\"", "-", "_", "x", "\\n" };
    size_t np = sizeof positives / sizeof positives[0];
    size_t nn = sizeof negatives / sizeof negatives[0];
    ds_test_seed(42);
    char buf[4096];
    for (int round = 0; round < 2000; round++) {
        size_t len = 0;
        uint8_t r[16];
        ds_test_random(r, sizeof r);
        for (int p = 0; p < 6; p++) {
            const char *a = (r[p] & 1) ? positives[r[p + 6] % np].in : negatives[r[p + 6] % nn];
            const char *sep = seps[r[p + 10] % 10];
            size_t al = strlen(a), sl = strlen(sep);
            if (len + al + sl >= sizeof buf) break;
            memcpy(buf + len, a, al);
            len += al;
            memcpy(buf + len, sep, sl);
            len += sl;
        }
        check_idempotent(buf, len);
    }
}

static void test_large_clean(void **state)
{
    (void)state;
    /* 2 MB of code-like text without secrets comes out identical, and a
     * secret appended at the end is still found */
    const char *line = "    if (token_count > max_tokens) { password_hint = \"see docs\"; } // sk-1 task-ant-farm\n";
    size_t ll = strlen(line), n = (2u << 20) / ll;
    char *big = malloc(n * ll + 64);
    assert_non_null(big);
    for (size_t k = 0; k < n; k++) memcpy(big + k * ll, line, ll);
    size_t len = n * ll;
    memcpy(big + len, GHP, strlen(GHP));
    len += strlen(GHP);
    char *out;
    size_t outlen;
    ds_redact_stats st;
    assert_int_equal(ds_redact(big, len, &out, &outlen, &st), 0);
    assert_int_equal(st.total, 1);
    assert_memory_equal(out, big, n * ll);
    assert_string_equal(out + n * ll, "[REDACTED:github-token]");
    free(out);
    free(big);
}

/* Pathological repetitions must not blow up (linear scan); the test only
 * checks the results, the time limit of the suite catches a quadratic. */
static void test_pathological(void **state)
{
    (void)state;
    static const char *const units[] = {
        "sk-", "eyJ-", "token=f(", "token=\"", "Bearer x.", "://a:", "-----BEGIN A PRIVATE KEY-----",
        "xoxb-", "glpat-", "a.", "password:", "token='x token=`y ",
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ul = strlen(units[u]), n = (1u << 20) / ul;
        char *big = malloc(n * ul);
        assert_non_null(big);
        for (size_t k = 0; k < n; k++) memcpy(big + k * ul, units[u], ul);
        char *out;
        size_t outlen;
        assert_int_equal(ds_redact(big, n * ul, &out, &outlen, NULL), 0);
        free(out);
        free(big);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positives),
        cmocka_unit_test(test_negatives),
        cmocka_unit_test(test_multiple),
        cmocka_unit_test(test_interactions),
        cmocka_unit_test(test_binary_and_args),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_large_clean),
        cmocka_unit_test(test_pathological),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
