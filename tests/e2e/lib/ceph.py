"""A throwaway Ceph RADOS Gateway for the S3 tests, and a small S3 client to
look into its bucket from the test side.

    with Ceph(workdir, log_dir) as c:          # ~2 s: mon + OSD (memstore) + radosgw
        c.endpoint, c.access_key, c.secret_key
        s3 = c.client()                         # S3Client, SigV4 (stdlib hmac)
        s3.create_bucket("b"); s3.list_keys("b", "blobs/"); s3.list_uploads("b")
        c.stop_rgw(); c.start_rgw()             # the gateway only (same port, same data)

The daemons are started by lib/ceph.sh on free loopback ports, each under
setsid, their PIDs recorded (in the directory and here); stop() (also at
exit, also after a failure) kills exactly those PIDs and removes the
directory — stop it before whatever removes the directory it lives in.  The client is an
independent SigV4 implementation (hashlib/hmac), so the test side does not
trust the mirror's signer to check the mirror's work.
"""

import atexit
import datetime
import hashlib
import hmac
import http.client
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET

from .registry import free_port

__all__ = ["Ceph", "S3Client", "ceph_available"]

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "ceph.sh")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def ceph_available():
    return all(shutil.which(b) for b in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin"))


class S3Client:
    """Path-style S3 over plain HTTP, signed with SigV4 (payload hashed)."""

    def __init__(self, endpoint, access_key, secret_key, region="us-east-1"):
        u = urllib.parse.urlsplit(endpoint)
        self.host = u.netloc
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    def request(self, method, path, query=None, body=b"", headers=None):
        """(status, headers dict lowercased, body) of one signed request."""
        query = query or {}
        q = "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                     for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz[:8]
        sha = hashlib.sha256(body).hexdigest()
        h = {"host": self.host, "x-amz-date": amz, "x-amz-content-sha256": sha}
        for k, v in (headers or {}).items():
            h[k.lower()] = v
        names = sorted(h)
        canon_path = urllib.parse.quote(path, safe="/-_.~")
        creq = "\n".join([method, canon_path, q] + ["%s:%s" % (n, h[n].strip()) for n in names] +
                         ["", ";".join(names), sha])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            self.access_key, scope, ";".join(names), sig)
        conn = http.client.HTTPConnection(self.host, timeout=60)
        try:
            conn.request(method, canon_path + ("?" + q if q else ""), body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def create_bucket(self, bucket):
        st, _, body = self.request("PUT", "/" + bucket)
        if st != 200:
            raise RuntimeError("create bucket %s: %d %s" % (bucket, st, body[:300]))

    def list_objects(self, bucket, prefix=""):
        """{key: size} of every object under prefix (ListObjectsV2, paged)."""
        out, token = {}, None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            st, _, body = self.request("GET", "/" + bucket, q)
            if st != 200:
                raise RuntimeError("list %s: %d %s" % (bucket, st, body[:300]))
            root = ET.fromstring(body)
            for c in root.findall(NS + "Contents"):
                out[c.find(NS + "Key").text] = int(c.find(NS + "Size").text)
            if root.findtext(NS + "IsTruncated") != "true":
                return out
            token = root.findtext(NS + "NextContinuationToken")

    def list_uploads(self, bucket, prefix=""):
        """[(key, upload id)] of the multipart uploads in progress."""
        st, _, body = self.request("GET", "/" + bucket, {"uploads": "", "prefix": prefix})
        if st != 200:
            raise RuntimeError("list uploads %s: %d %s" % (bucket, st, body[:300]))
        root = ET.fromstring(body)
        return [(u.findtext(NS + "Key"), u.findtext(NS + "UploadId"))
                for u in root.findall(NS + "Upload")]

    def create_upload(self, bucket, key):
        st, _, body = self.request("POST", "/%s/%s" % (bucket, key), {"uploads": ""})
        if st != 200:
            raise RuntimeError("create upload: %d %s" % (st, body[:300]))
        return ET.fromstring(body).findtext(NS + "UploadId")

    def upload_part(self, bucket, key, upload_id, n, data):
        st, h, body = self.request("PUT", "/%s/%s" % (bucket, key),
                                   {"partNumber": str(n), "uploadId": upload_id}, data)
        if st != 200:
            raise RuntimeError("upload part: %d %s" % (st, body[:300]))
        return h.get("etag")

    def get(self, bucket, key, headers=None):
        return self.request("GET", "/%s/%s" % (bucket, key), headers=headers)

    def put(self, bucket, key, data):
        st, _, body = self.request("PUT", "/%s/%s" % (bucket, key), body=data)
        if st != 200:
            raise RuntimeError("put %s: %d %s" % (key, st, body[:300]))

    def delete(self, bucket, key):
        return self.request("DELETE", "/%s/%s" % (bucket, key))[0]


class Ceph:
    def __init__(self, workdir, log_dir, osd_store="memstore"):
        self.dir = os.path.join(workdir, "ceph")
        self.log_dir = log_dir
        self.osd_store = osd_store
        self.env = None
        self.mon_port = self.rgw_port = None
        self.pids = {}          # daemon name -> PID, kept here too: stop() needs no files
        self._up = False

    def _run(self, cmd, timeout=180):
        env = dict(os.environ, CEPH_DIR=self.dir, MON_PORT=str(self.mon_port),
                   RGW_PORT=str(self.rgw_port), OSD_PORT_MIN=str(self.osd_port_min),
                   OSD_STORE=self.osd_store)
        r = subprocess.run(["bash", SCRIPT, cmd], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("ceph.sh %s failed:\n%s%s" % (cmd, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def start(self):
        self.mon_port, self.rgw_port = free_port(), free_port()
        self.osd_port_min = 20000 + (free_port() % 40000)
        atexit.register(self.stop)
        self._up = True
        try:
            self._run("up")
        except BaseException:
            self.stop()
            raise
        self._read_pids()
        self.env = {}
        with open(os.path.join(self.dir, "s3.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                self.env[k] = v
        return self

    def _read_pids(self):
        for name in ("mon.a", "osd.0", "client.rgw"):
            try:
                with open(os.path.join(self.dir, "run", name + ".pid")) as f:
                    self.pids[name] = int(f.read().strip())
            except (OSError, ValueError):
                pass

    def _ours(self, pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return (self.dir + "/ceph.conf").encode() in f.read()
        except OSError:
            return False

    @property
    def endpoint(self):
        return self.env["S3_ENDPOINT"]

    @property
    def access_key(self):
        return self.env["S3_ACCESS_KEY"]

    @property
    def secret_key(self):
        return self.env["S3_SECRET_KEY"]

    def client(self):
        return S3Client(self.endpoint, self.access_key, self.secret_key)

    def stop_rgw(self):
        self._run("rgw-stop")

    def start_rgw(self):
        self._run("rgw-start")
        self._read_pids()

    def keep_logs(self):
        """Copy the daemons' logs to the artifacts directory."""
        if not os.path.isdir(self.dir):
            return
        dst = os.path.join(self.log_dir, "ceph")
        os.makedirs(dst, exist_ok=True)
        for f in os.listdir(self.dir):
            if re.search(r"\.(log|stdout)$", f):
                try:
                    shutil.copy(os.path.join(self.dir, f), dst)
                except OSError:
                    pass

    def stop(self):
        if not self._up:
            return
        self._up = False
        self.keep_logs()
        try:
            self._run("down", timeout=60)
        except Exception as e:
            print("ceph: stopping failed: %r" % (e,))
        # Whatever down could not reach (its directory removed under it, a
        # failure above): the PIDs we recorded, if they still are our daemons.
        for pid in self.pids.values():
            if self._ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pids = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
