// A job handler for bench/jobs.sh: answers 200 to every POST, counts them,
// keep-alive. Usage: node job_receiver.js PORT
const http = require('http');
const port = Number(process.argv[2]);
let n = 0;
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    n++;
    res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': '2'});
    res.end('ok');
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
process.on('SIGTERM', () => { console.log(`requests ${n}`); process.exit(0); });
