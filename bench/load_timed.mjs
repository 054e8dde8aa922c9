// Shared by load_polling.mjs and load_connect.mjs: run `workers` for `ms` milliseconds, then
// print {"<name>": count(), "seconds", "rate"} as one JSON line and exit (1 on a worker error).
export function timed(name, ms, workers, count, stop) {
  const start = Date.now();
  setTimeout(() => {
    stop();
    const seconds = (Date.now() - start) / 1000;
    const n = count();
    console.log(JSON.stringify({ [name]: n, seconds, rate: Math.round(n / seconds) }));
    process.exit(0);
  }, ms);
  Promise.all(workers()).catch((e) => { console.error(String(e)); process.exit(1); });
}
