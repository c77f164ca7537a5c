<#
.SYNOPSIS
    Intune detection script for the aiscout agent.

.DESCRIPTION
    Intune counts the app as installed when this script exits 0 AND writes to stdout. It
    checks that the service "aiscout-agent" exists and points at the installed program, and
    that the program and its configuration are present. It writes nothing and exits 1
    otherwise.
#>
$ServiceName = 'aiscout-agent'
$Exe = Join-Path $env:ProgramFiles 'aiscout\aiscout-agent.exe'
$Config = Join-Path $env:ProgramData 'aiscout\agent.toml'

$service = Get-CimInstance -ClassName Win32_Service -Filter "Name='$ServiceName'" -ErrorAction SilentlyContinue
if ($null -eq $service) { exit 1 }
if ($service.PathName -notlike "*$Exe*") { exit 1 }
if (-not (Test-Path -LiteralPath $Exe -PathType Leaf)) { exit 1 }
if (-not (Test-Path -LiteralPath $Config -PathType Leaf)) { exit 1 }

$version = (Get-Item -LiteralPath $Exe).VersionInfo.ProductVersion
Write-Output "aiscout agent installed (service $($service.State), $Exe $version)"
exit 0
