"""The seed article's edge code (its final, working version), pointed at the local stand-in.

Used by scripts/bench as the "seed" candidate: requests for hop 1 (mutual TLS to the IoT
credentials provider), then boto3 for STS AssumeRole and Lambda Invoke, three requests on every
call, no cache, exactly the article's structure and calls. Deviations, all needed to reach the
stand-in instead of AWS and none of which changes what is imported or how many requests are made:

- endpoints, certificate paths, role ARN, function ARN and region come from the stand-in's
  iotinvoke.ini (path: first argument, else $IOTINVOKE_CONFIG) instead of literals;
- ``verify=`` the stand-in's CA for requests and for both boto3 clients (the article relies on
  the system trust store), ``endpoint_url=`` for the STS and Lambda clients (the article uses
  AWS's), and ``region_name=`` (the article relies on the region configured on the device);
- the role ARN is the stand-in's ``iotinvoke-dev`` role, not the function's execution role.

``LogType='Tail'`` stays: in the article's final code the invoke runs with the assumed role of
the Lambda account, so the log tail is same-account and allowed (it was only the first,
one-hop attempt that Lambda refused with "Cross-account log access is not allowed").
Like the article, hop 1's failure ends with ``exit()`` (status 0, nothing printed); the bench
checks every answer, so that cannot pass unnoticed.
"""
import configparser
import os
import sys

import requests
import json
import boto3
from boto3.session import Session

# --- bench adaptation: read the stand-in's configuration ------------------------------------------
_config_path = sys.argv[1] if len(sys.argv) > 1 else os.environ["IOTINVOKE_CONFIG"]
_config = configparser.ConfigParser(inline_comment_prefixes=(";",))
_config.read(_config_path)
_base = os.path.dirname(os.path.abspath(_config_path))


def _path(value):
    return os.path.join(_base, value)


_ca = _path(_config["iot"]["ca"])
_function_arn = _config["dev"]["function"]
_region = _function_arn.split(":")[3]
# ---------------------------------------------------------------------------------------------------

endpoint = _config["iot"]["endpoint"]
role_alias = _config["iot"]["role_alias"]

# 証明書を元に一時クレデンシャルを引く
result = requests.get(
    f'{endpoint}/role-aliases/{role_alias}/credentials',
    cert=(_path(_config["iot"]["cert"]), _path(_config["iot"]["key"])),
    verify=_ca,
)

if(result.status_code != 200):
    exit()

body = json.loads(result.text)
access_key = body["credentials"]["accessKeyId"]
secret_key = body["credentials"]["secretAccessKey"]
token = body["credentials"]["sessionToken"]

session1 = Session(aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=token)

# 一時クレデンシャルを元にSTSにアクセス
sts_connection = session1.client('sts', region_name=_region,
                                 endpoint_url=_config["dev"]["sts_endpoint"], verify=_ca)

# STSから111111111111のIAM RoleをAssume Roleする
acct_b = sts_connection.assume_role(
        RoleArn=_config["dev"]["role_arn"],
        RoleSessionName="cross_acct_lambda"
    )

# 一時クレデンシャルを再び取得
ACCESS_KEY = acct_b['Credentials']['AccessKeyId']
SECRET_KEY = acct_b['Credentials']['SecretAccessKey']
SESSION_TOKEN = acct_b['Credentials']['SessionToken']


client = boto3.client(
        'lambda',
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        region_name=_region,
        endpoint_url=_config["dev"]["lambda_endpoint"],
        verify=_path(_config["dev"]["ca_bundle"]),
    )

# 再び取得した一時クレデンシャルでLambdaを叩く
response = client.invoke(
  FunctionName=_function_arn,
  InvocationType='RequestResponse',
  LogType='Tail',
  Payload='{\"test\":\"test1\"}'
)

output = response['Payload'].read().decode('utf-8')

print(output)
