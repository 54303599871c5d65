# shellcheck shell=bash
# The chaos suite's servers listen on ports and keep state apart from the
# end-to-end suite's (scripts/e2e), so both can run on one machine. Source
# it; every value can be overridden from the environment.
_chaos_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export E2E_STATE_DIR=${E2E_STATE_DIR:-$_chaos_root/.e2e-chaos}
export KAFKA_PORT=${KAFKA_PORT:-29092}
export KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-29093}
export VSFTPD_PORT=${VSFTPD_PORT:-2221}
export PUREFTPD_PORT=${PUREFTPD_PORT:-2222}
export VSFTPS_PORT=${VSFTPS_PORT:-2223}
export VSFTPD_PASV=${VSFTPD_PASV:-33000-33999}
export PUREFTPD_PASV=${PUREFTPD_PASV:-34000-34999}
export VSFTPS_PASV=${VSFTPS_PASV:-35000-35999}
export E2E_FTP_ROOT=${E2E_FTP_ROOT:-/srv/ftp-chaos}
export SFTPD_PORT=${SFTPD_PORT:-2832}
export SFTPD_PROFTPD_PORT=${SFTPD_PROFTPD_PORT:-2833}
unset _chaos_root
export KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-off}
