// The web console in Debian's chromium, driven by playwright-core (no browser download):
//   node console_test.js URL TOKEN SCREENSHOT_DIR
// Logs in (after a wrong token is refused), finds the blocked end note and its reason, retries a
// dead delivery with a reason, finds the retry in the audit log, and keeps a screenshot of each
// step. Prints one JSON line with what it saw; exits 1 naming the step that failed.
'use strict';
const {chromium} = require('playwright-core');
const path = require('path');

const [url, token, shots, viewerToken] = process.argv.slice(2);
const WAIT = 15000;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.SAMBAND_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
  const seen = {console_errors: [], page_errors: []};
  let step = 'start';
  try {
    const page = await browser.newPage({viewport: {width: 1400, height: 900}});
    page.on('console', (m) => {
      if (m.type() === 'error') seen.console_errors.push(m.text());
    });
    page.on('pageerror', (e) => seen.page_errors.push(String(e)));
    const shot = (name) => page.screenshot({path: path.join(shots, name + '.png'), fullPage: true});

    step = 'open the console';
    const res = await page.goto(url);
    seen.status = res.status();
    seen.csp = res.headers()['content-security-policy'] || '';
    await page.waitForSelector('#login-form', {state: 'visible', timeout: WAIT});

    step = 'a wrong token is refused';
    await page.fill('#token', 'not-a-valid-token');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('not valid'),
      null, {timeout: WAIT});
    seen.wrong_token = await page.textContent('#login-error');
    await shot('01-login-refused');

    step = 'log in';
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#overview:not([hidden]) #endpoints tbody tr', {timeout: WAIT});
    seen.who = await page.textContent('#who');
    seen.token_in_session_storage = await page.evaluate(() => sessionStorage.getItem('samband.token') !== null);
    seen.cookies = (await page.context().cookies()).length;
    await shot('02-overview');

    step = 'find the blocked end note';
    await page.click('#nav button[data-view=deliveries]');
    await page.selectOption('#delivery-filter select[name=state]', 'blocked');
    await page.click('#delivery-filter button[type=submit]');
    const blocked = 'tr[data-state=blocked][data-type="rph.treatment.ended"]';
    await page.waitForSelector(blocked, {timeout: WAIT});
    await shot('03-blocked-list');
    seen.blocked_id = await page.getAttribute(blocked, 'data-id');
    await page.click(blocked + ' button.link');
    await page.waitForSelector('#delivery:not([hidden]) dd[data-field=reason]', {timeout: WAIT});
    seen.blocked_reason = await page.textContent('dd[data-field=reason]');
    await shot('04-blocked-end-note');

    step = 'retry a dead delivery';
    await page.click('#nav button[data-view=deliveries]');
    await page.selectOption('#delivery-filter select[name=state]', 'dead');
    await page.click('#delivery-filter button[type=submit]');
    const dead = '#delivery-list tr[data-state=dead]';
    await page.waitForSelector(dead, {timeout: WAIT});
    seen.dead_id = await page.getAttribute(dead, 'data-id');
    await page.click(dead + ' button.link');
    await page.waitForSelector('#retry:not([hidden])', {timeout: WAIT});
    await page.click('#retry');
    await page.fill('#reason', 'receiver fixed (console test)');
    await shot('05-retry-reason');
    await page.click('#reason-ok');
    await page.waitForFunction(() => document.getElementById('message').textContent.includes('pending again'),
      null, {timeout: WAIT});
    seen.retried_state = await page.textContent('dd[data-field=state]');
    await shot('06-retried');

    step = 'the retry is in the audit log';
    await page.click('#nav button[data-view=audit]');
    await page.fill('#audit-filter input[name=subject]', 'delivery:' + seen.dead_id);
    await page.click('#audit-filter button[type=submit]');
    await page.waitForFunction(() => [...document.querySelectorAll('#audit-list tbody td')]
      .some((td) => td.textContent.includes('receiver fixed (console test)')), null, {timeout: WAIT});
    seen.audit_rows = await page.$$eval('#audit-list tbody tr', (rows) => rows.map((r) => r.innerText));
    await shot('07-audit');

    step = 'log out';
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])', {timeout: WAIT});
    seen.token_after_logout = await page.evaluate(() => sessionStorage.getItem('samband.token'));

    step = 'a viewer sees the overview only';
    await page.fill('#token', viewerToken);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#overview:not([hidden]) #endpoints tbody tr', {timeout: WAIT});
    seen.viewer_menu = await page.$$eval('#nav button', (bs) => bs.filter((b) => !b.hidden).map((b) => b.dataset.view));
    seen.viewer_deliveries_status = await page.evaluate(async () => (await fetch('/api/v1/deliveries', {
      headers: {Authorization: 'Bearer ' + sessionStorage.getItem('samband.token')}})).status);
    await shot('08-viewer');
  } catch (e) {
    console.log(JSON.stringify(seen));
    console.error(`console test failed at "${step}": ${e.message}`);
    await browser.close();
    process.exit(1);
  }
  await browser.close();
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
