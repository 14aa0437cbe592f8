# The independent oracle of tests_oracle.rs: Python's `cryptography` and `wechatpayv3`
# check the Rust side's request signature, notification signature and AES-GCM resource,
# and make a request and a notification of their own for Rust to verify.
import base64, json, sys, time

try:
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
    from wechatpayv3.utils import aes_decrypt, build_authorization, rsa_sign, rsa_verify
except ImportError as e:
    print("MISSING PYTHON MODULE: %s (pip install cryptography wechatpayv3)" % e, file=sys.stderr)
    sys.exit(3)

inp = json.load(sys.stdin)
d = inp["dir"] + "/wechat/"
rd = lambda f: open(d + f, encoding="utf-8").read()
merchant_pub = load_pem_public_key(rd("merchant_public_key.pem").encode())
platform_pub = load_pem_public_key(rd("platform_public_key.pem").encode())
merchant_priv = load_pem_private_key(rd("merchant_private_key.pem").encode(), None)
platform_priv = load_pem_private_key(rd("platform_private_key.pem").encode(), None)
apiv3 = rd("apiv3_key").strip()
mch = json.loads(rd("merchant.json"))
plat = json.loads(rd("platform.json"))
out = {}

# 1. Rust's signed request, checked with plain `cryptography`.
r = inp["request"]
scheme = "WECHATPAY2-SHA256-RSA2048 "
auth = r["authorization"]
assert auth.startswith(scheme), auth
attrs = {k: v.strip('"') for k, v in (kv.split("=", 1) for kv in auth[len(scheme):].split(","))}
msg = "%s\n%s\n%s\n%s\n%s\n" % (r["method"], r["path"], attrs["timestamp"], attrs["nonce_str"], r["body"])
try:
    merchant_pub.verify(base64.b64decode(attrs["signature"]), msg.encode("utf-8"), PKCS1v15(), SHA256())
    out["request_ok"] = attrs["mchid"] == mch["mchid"] and attrs["serial_no"] == mch["serial_no"]
except Exception:
    out["request_ok"] = False

# 2. The sandbox's notification, checked with wechatpayv3's own utilities.
n = inp["notification"]
h = n["headers"]
out["notification_sig_ok"] = bool(
    rsa_verify(h["wechatpay-timestamp"], h["wechatpay-nonce"], n["body"], h["wechatpay-signature"], platform_pub)
) and h["wechatpay-serial"] == plat["serial_no"]
res = json.loads(n["body"])["resource"]
out["plaintext"] = aes_decrypt(res["nonce"], res["ciphertext"], res["associated_data"], apiv3)

# 3. A request signed by wechatpayv3.
body = json.dumps({"out_order_no": "PY1", "service_introduction": "无人货柜"}, ensure_ascii=False)
path = "/sandbox/wechat/v3/payscore/serviceorder?x=1"
out["py_request"] = {
    "method": "POST",
    "path": path,
    "body": body,
    "authorization": build_authorization(path, "POST", mch["mchid"], mch["serial_no"], merchant_priv, data=body),
}

# 4. A notification made with `cryptography` and signed with wechatpayv3.
resource = json.dumps(inp["py_resource"], ensure_ascii=False)
nonce, aad = "abcdef012345", "payscore"
ct = base64.b64encode(AESGCM(apiv3.encode()).encrypt(nonce.encode(), resource.encode("utf-8"), aad.encode())).decode()
envelope = {
    "id": "PY-EV-1", "create_time": "2026-12-02T00:30:00+08:00", "event_type": "PAYSCORE.USER_PAID",
    "resource_type": "encrypt-resource", "summary": "支付成功",
    "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": ct, "associated_data": aad,
                 "original_type": "payscore", "nonce": nonce},
}
nbody = json.dumps(envelope, ensure_ascii=False)
ts, nn = str(int(time.time())), "PYNONCE0123456789"
out["py_notification"] = {
    "headers": {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nn, "Wechatpay-Serial": plat["serial_no"],
                "Wechatpay-Signature": rsa_sign(platform_priv, "%s\n%s\n%s\n" % (ts, nn, nbody))},
    "body": nbody,
}
print(json.dumps(out, ensure_ascii=False))
