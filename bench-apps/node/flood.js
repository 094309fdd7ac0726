// Prints N (argv[2], default 1,000,000) numbered lines to stdout as fast as
// console.log goes, then `DONE`, then idles. For bench-apps/measure-logs.sh.
const n = Number(process.argv[2]) || 1e6;
for (let i = 0; i < n; i++) {
  console.log(`flood line ${String(i).padStart(8, '0')} padding padding padding`);
}
console.log('DONE');
setInterval(() => {}, 1 << 30);
