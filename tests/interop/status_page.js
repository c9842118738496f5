// Drives the proxy's status page in headless Chromium (Debian's /usr/bin/chromium, through
// playwright-core) for tests/status_page.rs. Usage: node status_page.js URL TOKEN SCREENSHOT.
// Steps come as lines on stdin; each answer is one JSON line on stdout:
//   wait N            -> {"upstreams": {name: state}} once N upstream rows are shown
//   state NAME STATE  -> {"state": STATE} once NAME's row shows STATE (the page updating itself)
//   token             -> types TOKEN into the page's token field
//   click NAME ACTION -> {"status": HTTP status} once a click on NAME's ACTION button (drain,
//                        pause, enable) posted the action and got its answer
//   clients           -> {"clients": [...]} the client rows' names
//   shot              -> {"shot": PATH} once every chart has a line, a screenshot of the page
//   quit              -> {"errors": [...]} every script error the page logged, then exits
const { chromium } = require("playwright-core");
const readline = require("readline");

const [url, token, screenshot] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(url);
  const stateOf = (name) => page.locator(`#upstreams tr[data-upstream="${name}"] td.state`);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [step, a, b] = line.trim().split(/\s+/);
    try {
      if (step === "wait") {
        await page.waitForFunction((n) => document.querySelectorAll("#upstreams tr[data-upstream]").length === n,
          Number(a), { timeout: 20000 });
        const rows = await page.$$eval("#upstreams tr[data-upstream]",
          (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.upstream, tr.querySelector("td.state").textContent])));
        say({ upstreams: rows });
      } else if (step === "state") {
        await stateOf(a).filter({ hasText: new RegExp(`^${b}$`) }).waitFor({ timeout: 20000 });
        say({ state: await stateOf(a).textContent() });
      } else if (step === "token") {
        await page.fill("#token", token);
        await page.dispatchEvent("#token", "change");
        say({ token: true });
      } else if (step === "click") {
        // The rows are rebuilt every 2 s; a click that lands as its button is replaced (a slow,
        // busy machine) posts nothing, so it counts only once the page's POST is answered.
        const action = `/upstreams/${encodeURIComponent(a)}/${b}`;
        let status = null;
        for (let tries = 0; status === null && tries < 5; tries++) {
          const posted = page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith(action),
            { timeout: 5000 }).catch(() => null);
          await page.click(`#upstreams tr[data-upstream="${a}"] button[data-action="${b}"]`);
          const answer = await posted;
          if (answer) status = answer.status();
        }
        if (status === null) throw new Error(`clicking ${a} ${b} posted nothing`);
        say({ clicked: `${a} ${b}`, status });
      } else if (step === "clients") {
        await page.waitForSelector("#clients tr[data-client]", { timeout: 20000 });
        say({ clients: await page.$$eval("#clients tr[data-client]", (trs) => trs.map((tr) => tr.dataset.client)) });
      } else if (step === "shot") {
        await page.waitForFunction(() => [...document.querySelectorAll(".chart polyline")]
          .some((l) => l.getAttribute("points").split(" ").length >= 2), null, { timeout: 30000 });
        await page.screenshot({ path: screenshot, fullPage: true });
        say({ shot: screenshot });
      } else if (step === "quit") {
        say({ errors });
        break;
      }
    } catch (e) {
      say({ failed: step, error: String(e.message || e) });
    }
  }
  await browser.close();
})().catch((e) => { say({ failed: "start", error: String(e.message || e) }); process.exit(1); });
