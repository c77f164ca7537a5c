<#
.SYNOPSIS
    Installs the aiscout agent as the Windows service "aiscout-agent" (Intune Win32 install
    command; also fine by hand in an elevated PowerShell).

.DESCRIPTION
    Copies aiscout-agent.exe to %ProgramFiles%\aiscout, writes %ProgramData%\aiscout\agent.toml
    with the enroll secret and catalog key files beside it, and the organisation overlay key
    when one is given (readable by SYSTEM and Administrators only), registers the service (automatic start, restart on failure) and
    starts it. Values come from the parameters, else from install-settings.psd1, enroll_secret
    and catalog.pub beside this script (as `aiscout-collector mdm-package --platform windows`
    writes them). An existing agent.toml is replaced; the state folder is kept.

    Npcap is needed for live capture. Without it the agent (an MSVC build, which delay-loads
    wpcap.dll) still runs the inventory and reports capture as unavailable; this script says so
    and exits 0. The service runs `aiscout-agent.exe service`, which answers the service
    control manager.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1
#>
[CmdletBinding()]
param(
    # The agent executable; default: aiscout-agent.exe beside this script.
    [string]$BinaryPath = (Join-Path $PSScriptRoot 'aiscout-agent.exe'),
    # https:// URL of the collector.
    [string]$CollectorUrl,
    # SHA-256 (64 hex digits) of the collector certificate; empty: trust the system roots.
    [string]$PinSha256,
    # File holding the enroll secret.
    [string]$EnrollSecretFile = (Join-Path $PSScriptRoot 'enroll_secret'),
    # File holding the catalog public key (64 hex digits).
    [string]$CatalogKeyFile = (Join-Path $PSScriptRoot 'catalog.pub'),
    # The collector's organisation-overlay public key (64 hex digits; `overlay key HEX` printed
    # by `aiscout-collector serve`); empty: the agent fetches no overlay.
    [string]$OverlayKey,
    # Device owner's email, when the deployment tool knows it.
    [string]$OwnerEmail,
    # Also write the Chrome, Edge and Firefox policies that turn DNS over HTTPS off.
    [switch]$SetBrowserDnsPolicies
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'aiscout-agent'
$ProgramDir = Join-Path $env:ProgramFiles 'aiscout'
$DataDir = Join-Path $env:ProgramData 'aiscout'
$StateDir = Join-Path $DataDir 'state'
$Exe = Join-Path $ProgramDir 'aiscout-agent.exe'
$Config = Join-Path $DataDir 'agent.toml'

function Fail([string]$Message) {
    Write-Error "aiscout install: $Message" -ErrorAction Continue
    exit 1
}

function TomlString([string]$Value) {
    '"' + $Value.Replace('\', '\\').Replace('"', '\"') + '"'
}

# Only SYSTEM and Administrators, no inheritance: the folder holds the enroll secret.
function Protect-Folder([string]$Path) {
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in 'S-1-5-18', 'S-1-5-32-544') {
        $id = New-Object System.Security.Principal.SecurityIdentifier($sid)
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule(
            $id, 'FullControl', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
        $acl.AddAccessRule($rule)
    }
    Set-Acl -Path $Path -AclObject $acl
}

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Fail 'run as SYSTEM or an administrator'
}

$settingsFile = Join-Path $PSScriptRoot 'install-settings.psd1'
if (Test-Path -LiteralPath $settingsFile) {
    $settings = Import-PowerShellDataFile -LiteralPath $settingsFile
    if (-not $CollectorUrl -and $settings.ContainsKey('CollectorUrl')) { $CollectorUrl = $settings.CollectorUrl }
    if (-not $PSBoundParameters.ContainsKey('PinSha256') -and $settings.ContainsKey('PinSha256')) { $PinSha256 = $settings.PinSha256 }
    if (-not $PSBoundParameters.ContainsKey('OverlayKey') -and $settings.ContainsKey('OverlayKey')) { $OverlayKey = $settings.OverlayKey }
}

$problems = @()
if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) { $problems += "agent binary $BinaryPath not found" }
if (-not $CollectorUrl) { $problems += 'no collector URL: pass -CollectorUrl or put install-settings.psd1 beside this script' }
elseif (-not $CollectorUrl.StartsWith('https://')) { $problems += "collector URL $CollectorUrl must start with https://" }
if ($PinSha256 -and $PinSha256 -notmatch '^[0-9a-fA-F]{64}$') { $problems += 'PinSha256 must be 64 hex digits' }
if ($OverlayKey -and $OverlayKey -notmatch '^[0-9a-fA-F]{64}$') { $problems += 'OverlayKey (the organisation overlay public key) must be 64 hex digits' }
if (-not (Test-Path -LiteralPath $EnrollSecretFile -PathType Leaf)) { $problems += "enroll secret file $EnrollSecretFile not found" }
if (-not (Test-Path -LiteralPath $CatalogKeyFile -PathType Leaf)) { $problems += "catalog key file $CatalogKeyFile not found" }
if ($problems.Count -gt 0) { Fail ("cannot install:`n  " + ($problems -join "`n  ")) }

# Stop a running agent before its binary is replaced.
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') {
    Stop-Service -Name $ServiceName -Force
    $existing.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
}

New-Item -ItemType Directory -Force -Path $ProgramDir | Out-Null
Copy-Item -LiteralPath $BinaryPath -Destination $Exe -Force

New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
Protect-Folder $DataDir
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
Copy-Item -LiteralPath $EnrollSecretFile -Destination (Join-Path $DataDir 'enroll_secret') -Force
Copy-Item -LiteralPath $CatalogKeyFile -Destination (Join-Path $DataDir 'catalog.pub') -Force
$OverlayKeyFile = Join-Path $DataDir 'overlay.pub'
if ($OverlayKey) {
    [System.IO.File]::WriteAllText($OverlayKeyFile, $OverlayKey.ToLowerInvariant() + "`n", (New-Object System.Text.UTF8Encoding($false)))
} elseif (Test-Path -LiteralPath $OverlayKeyFile) {
    # No key this time: an old one must not stay pinned.
    Remove-Item -LiteralPath $OverlayKeyFile -Force
}

$lines = @(
    '# aiscout agent configuration, written by install.ps1.',
    "collector_url = $(TomlString $CollectorUrl)",
    "enroll_secret_file = $(TomlString (Join-Path $DataDir 'enroll_secret'))",
    "catalog_key_file = $(TomlString (Join-Path $DataDir 'catalog.pub'))",
    "state_dir = $(TomlString $StateDir)",
    'interfaces = []'
)
if ($PinSha256) { $lines += "pin_sha256 = $(TomlString $PinSha256.ToLowerInvariant())" }
if ($OverlayKey) { $lines += "overlay_key_file = $(TomlString $OverlayKeyFile)" }
if ($OwnerEmail) { $lines += "owner_email = $(TomlString $OwnerEmail)" }
# UTF-8 without a byte-order mark, which TOML parsers refuse.
[System.IO.File]::WriteAllText($Config, (($lines -join "`n") + "`n"), (New-Object System.Text.UTF8Encoding($false)))

& $Exe check-config --config $Config
if ($LASTEXITCODE -ne 0) { Fail "the configuration in $Config is not valid (see above)" }

# `service` (not `run`) answers the service control manager: it reports Running, stops cleanly
# on Stop and Shutdown, and reports Stopped with exit code 1 after a failure, which the recovery
# actions below (with failureflag 1) treat as a crash.
$binPath = "`"$Exe`" service --config `"$Config`""
if ($existing) {
    # An upgrade (possibly from a version registered with `run`): rewrite the command line in
    # the service's registry key rather than through sc.exe, whose `binPath=` argument would
    # lose the embedded quotes in Windows PowerShell 5.1's native-argument passing.
    Set-ItemProperty -LiteralPath "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName" -Name ImagePath -Value $binPath
    Set-Service -Name $ServiceName -StartupType Automatic
} else {
    New-Service -Name $ServiceName -BinaryPathName $binPath -DisplayName 'aiscout agent' `
        -Description 'Discovers AI tool use on this machine and reports it to the aiscout collector.' `
        -StartupType Automatic | Out-Null
}
# Restart after 10 s, 60 s, then every 5 minutes; reset the count after a day.
& sc.exe failure $ServiceName reset= 86400 actions= restart/10000/restart/60000/restart/300000 | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "sc.exe failure $ServiceName failed ($LASTEXITCODE)" }
# Also restart when the service stops itself with a non-zero exit code, not only on a crash.
& sc.exe failureflag $ServiceName 1 | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "sc.exe failureflag $ServiceName failed ($LASTEXITCODE)" }

$npcap = (Test-Path -LiteralPath (Join-Path $env:SystemRoot 'System32\Npcap\wpcap.dll')) -or
         (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Npcap')
if (-not $npcap) {
    Write-Warning ('aiscout: Npcap is not installed: live network capture is UNAVAILABLE on this machine. ' +
        'The agent (MSVC build) runs the inventory only and reports capture as unavailable. Install Npcap ' +
        '(OEM edition for fleet deployment; see the README) and restart the service.')
}

if ($SetBrowserDnsPolicies) {
    foreach ($key in 'HKLM:\SOFTWARE\Policies\Google\Chrome', 'HKLM:\SOFTWARE\Policies\Microsoft\Edge') {
        New-Item -Path $key -Force | Out-Null
        Set-ItemProperty -Path $key -Name 'DnsOverHttpsMode' -Value 'off' -Type String
    }
    $ff = 'HKLM:\SOFTWARE\Policies\Mozilla\Firefox\DNSOverHTTPS'
    New-Item -Path $ff -Force | Out-Null
    Set-ItemProperty -Path $ff -Name 'Enabled' -Value 0 -Type DWord
    Set-ItemProperty -Path $ff -Name 'Locked' -Value 1 -Type DWord
}

Start-Service -Name $ServiceName
Write-Output "aiscout agent installed: service $ServiceName running, config $Config, capture $(if ($npcap) { 'available' } else { 'UNAVAILABLE (no Npcap)' })"
exit 0
